import assert from "node:assert/strict";
import { formatSummary, histogramQuantile, parsePrometheus, summarize } from "./metrics.ts";

const TEXT = `# HELP shanghai_wal_write_latency x
# TYPE shanghai_wal_write_latency histogram
shanghai_wal_write_latency_count{otel_scope_name="shanghai"} 100
shanghai_wal_write_latency_sum{otel_scope_name="shanghai"} 900
shanghai_wal_write_latency_bucket{otel_scope_name="shanghai",le="1"} 40
shanghai_wal_write_latency_bucket{otel_scope_name="shanghai",le="10"} 95
shanghai_wal_write_latency_bucket{otel_scope_name="shanghai",le="100"} 100
shanghai_wal_write_latency_bucket{otel_scope_name="shanghai",le="+Inf"} 100
shanghai_replication_lag{follower="b",leader="a",otel_scope_name="shanghai"} 12000
shanghai_replication_lag{follower="c",leader="a",otel_scope_name="shanghai"} 3
shanghai_cluster_members{state="up",otel_scope_name="shanghai"} 2
shanghai_cluster_nodes_down{otel_scope_name="shanghai"} 0
shanghai_disk_usage_percent{otel_scope_name="shanghai"} 91.5
shanghai_replication_peer_regressions_total{to_node="c",otel_scope_name="shanghai"} 1
shanghai_replication_own_origin_behind_total{from_node="b",otel_scope_name="shanghai"} 0
shanghai_http_requests_total{method="GET",route="/x \\"y\\"",status="503",otel_scope_name="shanghai"} 4
shanghai_event_loop_delay_bucket{otel_scope_name="shanghai",le="2"} 98
shanghai_event_loop_delay_bucket{otel_scope_name="shanghai",le="25"} 100
shanghai_event_loop_delay_bucket{otel_scope_name="shanghai",le="+Inf"} 100
`;

Deno.test("parsePrometheus() reads names, escaped labels and values", () => {
  const samples = parsePrometheus(TEXT);
  assert.equal(samples.length, 17);
  const http = samples.find((s) => s.name === "shanghai_http_requests_total")!;
  assert.equal(http.labels.route, '/x "y"');
  assert.equal(http.value, 4);
});

Deno.test("histogramQuantile() answers the upper bound of the bucket holding the quantile", () => {
  const samples = parsePrometheus(TEXT);
  assert.equal(histogramQuantile(samples, "shanghai_wal_write_latency", 0.4), 1);
  assert.equal(histogramQuantile(samples, "shanghai_wal_write_latency", 0.5), 10);
  assert.equal(histogramQuantile(samples, "shanghai_wal_write_latency", 0.99), 100);
  assert.equal(histogramQuantile(samples, "missing", 0.5), null);
});

Deno.test("summarize() applies seed 002's alert thresholds", () => {
  const s = summarize(parsePrometheus(TEXT));
  const firing = Object.fromEntries(s.alerts.map((a) => [a.metric, a.firing]));
  assert.deepEqual(firing, {
    shanghai_wal_write_latency_p99: true,
    shanghai_replication_lag: true,
    shanghai_cluster_nodes_down: false,
    shanghai_disk_usage_percent: true,
    shanghai_replication_peer_regressions_total: true,
    shanghai_replication_own_origin_behind_total: false,
  });
  assert.equal(s.replication.peerRegressions, 1);
  assert.equal(s.replication.maxLag, 12000);
  assert.equal(s.http.errors5xx, 4);
  assert.deepEqual(s.cluster.membersByState, { up: 2 });
  assert.equal(s.eventLoop.delayP99Ms, 25);
  assert.match(formatSummary(s), /^Event loop: {3}delay p99 <= 25 ms$/m);
});
