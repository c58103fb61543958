/**
 * /metrics passes `promtool check metrics`, `shanghai metrics` reads it, and /ready turns 503
 * (saying why) over the replication-lag limit or under the free-disk floor.
 *
 * promtool comes from Debian's prometheus package (.ci/install-tools installs it). When it is
 * missing this test FAILS: a silent skip would report an unchecked format as checked.
 */
import assert from "node:assert/strict";
import { resolveConfig } from "../../src/node/config.ts";
import { ShanghaiNode } from "../../src/node/node.ts";
import { silentLogger } from "../../src/telemetry/log.ts";
import { runCli, spawnNode, tempDir } from "../support/node_process.ts";

async function startNode(
  dataDir: string,
  flags: Record<string, string> = {},
): Promise<ShanghaiNode> {
  const config = resolveConfig({
    "data-dir": dataDir,
    "admin-port": "0",
    port: "0",
    "node-id": "m1",
    ...flags,
  }, {});
  return await ShanghaiNode.start(config, { logger: silentLogger });
}

async function promtoolCheck(text: string): Promise<{ code: number; output: string }> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("promtool", {
      args: ["check", "metrics"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    throw new Error(
      `promtool is not installed (${
        (error as Error).message
      }); run .ci/install-tools or apt-get install prometheus`,
    );
  }
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const out = await child.output();
  const decoder = new TextDecoder();
  return { code: out.code, output: decoder.decode(out.stdout) + decoder.decode(out.stderr) };
}

Deno.test("GET /metrics passes promtool check metrics and carries the seed 002 names", async () => {
  const dataDir = await tempDir();
  const node = await startNode(dataDir);
  const addr = `127.0.0.1:${node.httpPort}`;
  try {
    for (let i = 0; i < 20; i++) {
      const r = await fetch(`http://${addr}/v1/kv/key-${i}`, {
        method: "PUT",
        headers: { "content-type": "application/octet-stream" },
        body: `value-${i}`,
      });
      assert.equal(r.status, 200);
      await r.body?.cancel();
    }
    await (await fetch(`http://${addr}/v1/kv/missing`)).body?.cancel();
    node.events.emit("cluster.member.changed", { nodeId: "m2", state: "down" });
    node.events.emit("replication.lag.changed", { lag: 7, follower: "m2", leader: "m1" });
    const response = await fetch(`http://${addr}/metrics`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    const check = await promtoolCheck(text);
    assert.equal(check.code, 0, `promtool check metrics failed:\n${check.output}`);
    for (
      const name of [
        "shanghai_wal_write_latency_bucket",
        "shanghai_wal_fsync_latency_bucket",
        "shanghai_wal_written_bytes_total",
        "shanghai_wal_batch_entries_bucket",
        "shanghai_replication_lag{",
        "shanghai_cluster_nodes_down{",
        "shanghai_disk_usage_percent{",
        "shanghai_disk_free_bytes{",
        "shanghai_kv_shared_buffer_bytes{",
        "shanghai_replication_tail_cache_bytes{",
        'shanghai_http_requests_total{method="GET",route="/v1/kv/:key{.+}",status="404"',
      ]
    ) assert.ok(text.includes(name), `missing ${name}`);
    assert.match(text, /shanghai_wal_written_entries_total\{[^}]*\} 20\n/);

    const json = await runCli(["metrics", "--addr", addr, "--json"]);
    assert.equal(json.code, 0, json.stderr);
    const summary = JSON.parse(json.stdout);
    assert.equal(summary.wal.entriesWritten, 20);
    assert.equal(summary.cluster.nodesDown, 1);
    assert.equal(summary.replication.maxLag, 7);
    const firing = summary.alerts.filter((a: { firing: boolean }) => a.firing).map((
      a: { metric: string },
    ) => a.metric);
    assert.deepEqual(firing, ["shanghai_cluster_nodes_down"]);
    const human = await runCli(["metrics", "--addr", addr]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /shanghai_cluster_nodes_down\s+1\s+> 0\s+FIRING/);
    const raw = await runCli(["metrics", "--addr", addr, "--prometheus"]);
    assert.equal(raw.code, 0, raw.stderr);
    assert.match(raw.stdout, /# TYPE shanghai_wal_write_latency histogram/);
  } finally {
    await node.stop();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("/ready answers 503 with the reason while this node lags over ready-lag-max", async () => {
  const dataDir = await tempDir();
  const node = await startNode(dataDir, { "ready-lag-max": "1000" });
  const addr = `127.0.0.1:${node.httpPort}`;
  const ready = async () => {
    const response = await fetch(`http://${addr}/ready`);
    return { status: response.status, body: await response.json() };
  };
  try {
    assert.equal((await ready()).status, 200);
    // A follower of this node lagging does not make this node unfit to serve.
    node.events.emit("replication.lag.changed", { lag: 50_000, follower: "m2", leader: "m1" });
    assert.equal((await ready()).status, 200);
    node.events.emit("replication.lag.changed", { lag: 1001, follower: "m1", leader: "m2" });
    const slow = await ready();
    assert.equal(slow.status, 503);
    assert.match(
      slow.body.error.message,
      /replication lag 1001 entries \(follower m1, leader m2\) is over ready-lag-max 1000/,
    );
    assert.deepEqual(slow.body.reasons.length, 1);
    node.events.emit("replication.lag.changed", { lag: 0, follower: "m1", leader: "m2" });
    assert.equal((await ready()).status, 200);
    // A leader that goes down takes its stale lag figure with it.
    node.events.emit("replication.lag.changed", { lag: 5000, follower: "m1", leader: "m3" });
    assert.equal((await ready()).status, 503);
    node.events.emit("cluster.member.changed", {
      nodeId: "m3",
      state: "down",
      previous: "suspect",
    });
    assert.equal((await ready()).status, 200);
  } finally {
    await node.stop();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("/ready answers 503 with the reason below min-free-disk-bytes; --metrics off hides /metrics", async () => {
  const dataDir = await tempDir();
  // 2^52 bytes (4 PiB) of free space: no test machine has that.
  const node = await startNode(dataDir, { "min-free-disk-bytes": String(2 ** 52), metrics: "off" });
  const addr = `127.0.0.1:${node.httpPort}`;
  try {
    const ready = await fetch(`http://${addr}/ready`);
    assert.equal(ready.status, 503);
    assert.match(
      (await ready.json()).error.message,
      /free disk \d+ bytes is below min-free-disk-bytes 4503599627370496/,
    );
    const metrics = await fetch(`http://${addr}/metrics`);
    assert.equal(metrics.status, 404);
    assert.match((await metrics.json()).error.message, /--metrics off/);
  } finally {
    await node.stop();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("serve with OTEL_EXPORTER_OTLP_ENDPOINT pushes metrics and traces to that receiver", async () => {
  const received: { path: string; body: string }[] = [];
  const receiver = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (request) => {
      received.push({ path: new URL(request.url).pathname, body: await request.text() });
      return new Response("{}", { headers: { "content-type": "application/json" } });
    },
  );
  const dataDir = await tempDir();
  try {
    const node = await spawnNode({
      dataDir,
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.addr.port}`,
        OTEL_SERVICE_NAME: "shanghai-test",
        OTEL_TRACES_SAMPLER: "always_on",
      },
    });
    try {
      const put = await fetch(`http://${node.addr}/v1/kv/otlp`, {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: "1",
      });
      assert.equal(put.status, 200);
      await put.body?.cancel();
      assert.ok(node.logs.some((l) => l.msg === "Exporting traces over OTLP"));
    } finally {
      // A clean stop flushes both exporters: no waiting on export intervals.
      assert.equal((await node.stop()).code, 0);
    }
    const metrics = received.filter((r) => r.path === "/v1/metrics").map((r) => r.body).join("\n");
    const traces = received.filter((r) => r.path === "/v1/traces").map((r) => r.body).join("\n");
    assert.ok(
      metrics.includes("shanghai_wal_write_latency"),
      `no WAL metric pushed: ${metrics.slice(0, 300)}`,
    );
    assert.ok(metrics.includes("shanghai-test"));
    assert.ok(
      traces.includes('"name":"PUT /v1/kv/:key{.+}"'),
      `no HTTP span pushed: ${traces.slice(0, 300)}`,
    );
  } finally {
    await receiver.shutdown();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("the shipped Prometheus alert rules load and fire at seed 002's thresholds (promtool test rules)", async () => {
  const dir = new URL("../../scripts/prometheus/", import.meta.url).pathname;
  for (
    const args of [["check", "rules", "shanghai-alerts.yml"], [
      "test",
      "rules",
      "shanghai-alerts.test.yml",
    ]]
  ) {
    let out: Deno.CommandOutput;
    try {
      out = await new Deno.Command("promtool", { args, cwd: dir, stdout: "piped", stderr: "piped" })
        .output();
    } catch (error) {
      throw new Error(
        `promtool is not installed (${(error as Error).message}); run .ci/install-tools`,
      );
    }
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, `promtool ${args.join(" ")} failed:\n${text}`);
  }
});
