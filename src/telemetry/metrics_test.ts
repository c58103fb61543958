import assert from "node:assert/strict";
import { EventBus } from "./events.ts";
import { Metrics, otlpMetricExporter } from "./metrics.ts";
import { readinessProblems } from "./health.ts";

function emitSome(events: EventBus): void {
  events.emit("wal.write.completed", {
    durationMs: 3,
    syncMs: 2,
    bytes: 4096,
    entries: 7,
    gatherMs: 0.25,
  });
  events.emit("wal.write.completed", {
    durationMs: 60,
    syncMs: 55,
    bytes: 100,
    entries: 1,
    gatherMs: 0,
  });
  events.emit("http.request.completed", {
    method: "PUT",
    route: "/v1/kv/:key{.+}",
    status: 200,
    durationMs: 4,
  });
  events.emit("snapshot.completed", { lsn: 8, keys: 8, bytes: 999, durationMs: 12 });
  events.emit("retention.completed", { segmentsRemoved: 2, bytesRemoved: 5000, durationMs: 1 });
  events.emit("cluster.member.changed", { nodeId: "n2", state: "up" });
  events.emit("cluster.member.changed", { nodeId: "n3", state: "down" });
  events.emit("replication.lag.changed", { lag: 42, follower: "n2", leader: "n1" });
  events.emit("replication.credit.changed", { credit: 100, follower: "n2", leader: "n1" });
  events.emit("replication.conflict", { key: "k", winnerOrigin: "n1", loserOrigin: "n2" });
  events.emit("cluster.link.dropped", { peer: "n3", silentMs: 10_000 });
  events.emit("replication.snapshot.started", { follower: "n3" });
  events.emit("replication.peer.regressed", { follower: "n3", origins: 2 });
  events.emit("replication.origin.behind", { peer: "n2", numbered: 7, peerHolds: 20 });
  events.emit("cluster.heartbeat.completed", { rttMs: 1.5, fromNode: "n1", toNode: "n2" });
  events.emit("replication.applied", { delaysMs: [2, 4, 40] });
  events.emit("replication.acked", { follower: "n2", latenciesMs: [0.4, 3] });
  events.emit("process.loop.delay", { delayMs: 0.1 });
  events.emit("process.loop.delay", { delayMs: 30 });
}

Deno.test("Metrics records every instrument from bus events and renders Prometheus text", async () => {
  const events = new EventBus();
  const metrics = new Metrics({
    events,
    env: {},
    nodeId: "n1",
    sources: {
      disk: () => ({ totalBytes: 100, availableBytes: 40, usedPercent: 60 }),
      store: () => ({
        lastLsn: 8,
        firstLsn: 1,
        segments: 1,
        walBytes: 4196,
        keys: 8,
        tombstones: 3,
        sharedBufferBytes: 2048,
        sharedBufferLiveBytes: 1500,
      }),
      memory: () => ({ rss: 5000, heapUsed: 3000, heapTotal: 4000, external: 700 }),
      replication: () => ({ tailCacheBytes: 4096 }),
      slabs: () => ({
        request_bodies: { prefaulted: 12, fresh: 1, ready: 8 },
        frames: { prefaulted: 3, fresh: 0, ready: 7 },
      }),
    },
  });
  try {
    emitSome(events);
    const text = await metrics.prometheus();
    for (
      const line of [
        'shanghai_wal_write_latency_count{otel_scope_name="shanghai"} 2',
        'shanghai_wal_write_latency_bucket{otel_scope_name="shanghai",le="50"} 1',
        'shanghai_wal_fsync_latency_count{otel_scope_name="shanghai"} 2',
        'shanghai_wal_written_bytes_total{otel_scope_name="shanghai"} 4196',
        'shanghai_wal_written_entries_total{otel_scope_name="shanghai"} 8',
        'shanghai_wal_batch_entries_sum{otel_scope_name="shanghai"} 8',
        // One of the two batches waited 0.25 ms; the other did not wait and counts nothing.
        'shanghai_wal_gather_waits_total{otel_scope_name="shanghai"} 1',
        'shanghai_wal_gather_wait_seconds_total{otel_scope_name="shanghai"} 0.00025',
        'shanghai_http_requests_total{method="PUT",route="/v1/kv/:key{.+}",status="200",otel_scope_name="shanghai"} 1',
        'shanghai_snapshot_duration_count{otel_scope_name="shanghai"} 1',
        'shanghai_retention_removed_bytes_total{otel_scope_name="shanghai"} 5000',
        'shanghai_cluster_members{state="up",otel_scope_name="shanghai"} 1',
        'shanghai_memory_slabs_total{kind="request_bodies",source="prefaulted",otel_scope_name="shanghai"} 12',
        'shanghai_memory_slabs_total{kind="request_bodies",source="fresh",otel_scope_name="shanghai"} 1',
        'shanghai_memory_slabs_total{kind="frames",source="fresh",otel_scope_name="shanghai"} 0',
        'shanghai_memory_slabs_ready{kind="frames",otel_scope_name="shanghai"} 7',
        'shanghai_cluster_nodes_down{otel_scope_name="shanghai"} 1',
        'shanghai_replication_lag{follower="n2",leader="n1",otel_scope_name="shanghai"} 42',
        'shanghai_replication_credit{follower="n2",leader="n1",otel_scope_name="shanghai"} 100',
        'shanghai_replication_conflicts_total{otel_scope_name="shanghai"} 1',
        'shanghai_cluster_links_dropped_total{to_node="n3",otel_scope_name="shanghai"} 1',
        'shanghai_replication_snapshots_sent_total{to_node="n3",otel_scope_name="shanghai"} 1',
        'shanghai_replication_peer_regressions_total{to_node="n3",otel_scope_name="shanghai"} 1',
        'shanghai_replication_own_origin_behind_total{from_node="n2",otel_scope_name="shanghai"} 1',
        'shanghai_replication_apply_delay_count{otel_scope_name="shanghai"} 3',
        'shanghai_replication_apply_delay_bucket{otel_scope_name="shanghai",le="2"} 1',
        'shanghai_replication_apply_delay_bucket{otel_scope_name="shanghai",le="5"} 2',
        'shanghai_replication_apply_delay_bucket{otel_scope_name="shanghai",le="50"} 3',
        'shanghai_replication_ack_latency_count{to_node="n2",otel_scope_name="shanghai"} 2',
        'shanghai_replication_ack_latency_bucket{to_node="n2",otel_scope_name="shanghai",le="0.5"} 1',
        'shanghai_replication_ack_latency_bucket{to_node="n2",otel_scope_name="shanghai",le="2"} 1',
        'shanghai_replication_ack_latency_bucket{to_node="n2",otel_scope_name="shanghai",le="3"} 2',
        'shanghai_disk_usage_percent{otel_scope_name="shanghai"} 60',
        'shanghai_disk_free_bytes{otel_scope_name="shanghai"} 40',
        'shanghai_wal_last_lsn{otel_scope_name="shanghai"} 8',
        'shanghai_kv_keys{otel_scope_name="shanghai"} 8',
        'shanghai_kv_tombstones{otel_scope_name="shanghai"} 3',
        'shanghai_kv_shared_buffer_bytes{otel_scope_name="shanghai"} 2048',
        'shanghai_kv_shared_buffer_live_bytes{otel_scope_name="shanghai"} 1500',
        'shanghai_replication_tail_cache_bytes{otel_scope_name="shanghai"} 4096',
        'shanghai_process_resident_memory_bytes{otel_scope_name="shanghai"} 5000',
        'shanghai_process_heap_used_bytes{otel_scope_name="shanghai"} 3000',
        'shanghai_process_heap_total_bytes{otel_scope_name="shanghai"} 4000',
        'shanghai_process_external_memory_bytes{otel_scope_name="shanghai"} 700',
        'shanghai_event_loop_delay_count{otel_scope_name="shanghai"} 2',
        'shanghai_event_loop_delay_bucket{otel_scope_name="shanghai",le="0.25"} 1',
        'shanghai_event_loop_delay_bucket{otel_scope_name="shanghai",le="25"} 1',
        'shanghai_event_loop_delay_bucket{otel_scope_name="shanghai",le="50"} 2',
      ]
    ) {
      assert.ok(text.includes(line), `missing ${line} in\n${text}`);
    }
  } finally {
    await metrics.shutdown();
  }
});

Deno.test("Metrics pushes OTLP/HTTP to the endpoint named by OTEL_EXPORTER_OTLP_ENDPOINT", async () => {
  const received: { path: string; type: string; body: Uint8Array }[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (request) => {
      received.push({
        path: new URL(request.url).pathname,
        type: request.headers.get("content-type") ?? "",
        body: new Uint8Array(await request.arrayBuffer()),
      });
      return new Response("{}", { headers: { "content-type": "application/json" } });
    },
  );
  const events = new EventBus();
  const env = {
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${server.addr.port}`,
    OTEL_METRIC_EXPORT_INTERVAL: "600000",
  };
  assert.equal(await otlpMetricExporter({}), undefined);
  const metrics = new Metrics({ events, env, otlpExporter: await otlpMetricExporter(env) });
  try {
    assert.equal(metrics.otlpEndpoint, `http://127.0.0.1:${server.addr.port}/v1/metrics`);
    emitSome(events);
    await metrics.flush();
    assert.ok(received.length >= 1, "the receiver got no export");
    assert.equal(received[0].path, "/v1/metrics");
    const body = new TextDecoder().decode(received[0].body);
    assert.ok(
      body.includes("shanghai_wal_write_latency"),
      `export lacks the WAL histogram: ${body.slice(0, 300)}`,
    );
    assert.ok(body.includes("shanghai_replication_lag"));
  } finally {
    await metrics.shutdown();
    await server.shutdown();
  }
});

Deno.test("Metrics does not export OTLP without OTEL_* settings, or with OTEL_METRICS_EXPORTER=none", async () => {
  for (
    const env of [{}, {
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9",
      OTEL_METRICS_EXPORTER: "none",
    }]
  ) {
    const metrics = new Metrics({ events: new EventBus(), env });
    assert.equal(metrics.otlpEndpoint, undefined);
    await metrics.shutdown();
  }
});

Deno.test("readinessProblems() names the lag and the free-disk floor it breaks", () => {
  const limits = { readyLagMax: 100, minFreeDiskBytes: 1000 };
  assert.deepEqual(readinessProblems({}, limits), []);
  assert.deepEqual(
    readinessProblems({
      worstLag: { lag: 100, follower: "b", leader: "a" },
      disk: { totalBytes: 5000, availableBytes: 1000, usedPercent: 80 },
    }, limits),
    [],
  );
  const problems = readinessProblems({
    worstLag: { lag: 101, follower: "b", leader: "a" },
    disk: { totalBytes: 5000, availableBytes: 999, usedPercent: 80 },
  }, limits);
  assert.equal(problems.length, 2);
  assert.match(
    problems[0],
    /replication lag 101 entries \(follower b, leader a\) is over ready-lag-max 100/,
  );
  assert.match(problems[1], /free disk 999 bytes is below min-free-disk-bytes 1000/);
  assert.deepEqual(
    readinessProblems({ worstLag: { lag: 1e9, follower: "b", leader: "a" } }, {
      readyLagMax: 0,
      minFreeDiskBytes: 0,
    }),
    [],
  );
});
