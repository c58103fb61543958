/**
 * Whole nodes (store, HTTP API, replication) in one process, connected by an in-process
 * transport: acks, the 504 of a cut-off minority, causal and quorum reads, snapshot catch-up
 * after retention, restarts, and refused frames, all through the HTTP API.
 */
import assert from "node:assert/strict";
import { waitFor } from "../support/wait.ts";
import { resolveConfig } from "../../src/node/config.ts";
import { ShanghaiNode } from "../../src/node/node.ts";
import { silentLogger } from "../../src/telemetry/log.ts";
import { LoopbackNetwork, type LoopbackTransport } from "../support/loopback_network.ts";
import { batchBody } from "../support/repl_frames.ts";
import { digestsEqual } from "../support/node_http.ts";
import { runBackup } from "../../src/backup/backup.ts";
import { runRestore } from "../../src/backup/restore.ts";

interface TestNode {
  id: string;
  dir: string;
  node: ShanghaiNode;
  transport: LoopbackTransport;
  url: string;
}

const IDS = ["n1", "n2", "n3"];

async function startNode(
  network: LoopbackNetwork,
  id: string,
  dir: string,
  flags: Record<string, string> = {},
): Promise<TestNode> {
  const transport = network.add(id);
  const config = resolveConfig({
    "node-id": id,
    "admin-port": "0",
    "port": "0",
    "data-dir": dir,
    "ack-timeout-ms": "1500",
    ...flags,
  }, {});
  const node = await ShanghaiNode.start(config, {
    transport,
    members: () => IDS,
    logger: silentLogger,
  });
  transport.start();
  return { id, dir, node, transport, url: `http://127.0.0.1:${node.httpPort}` };
}

async function startCluster(
  flags: Record<string, string> = {},
): Promise<{ network: LoopbackNetwork; nodes: TestNode[] }> {
  const network = new LoopbackNetwork();
  const nodes: TestNode[] = [];
  for (const id of IDS) {
    nodes.push(
      await startNode(
        network,
        id,
        await Deno.makeTempDir({ prefix: `shanghai-repl-${id}-` }),
        flags,
      ),
    );
  }
  return { network, nodes };
}

async function stopAll(nodes: TestNode[]): Promise<void> {
  for (const n of nodes) {
    n.transport.stop();
    await n.node.stop();
    await Deno.remove(n.dir, { recursive: true }).catch(() => {});
  }
}

async function put(
  n: TestNode,
  key: string,
  value: unknown,
  query = "",
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${n.url}/v1/kv/${key}${query}`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(value),
  });
  return { status: response.status, body: await response.json() };
}

async function json(url: string): Promise<Record<string, unknown>> {
  const response = await fetch(url);
  return await response.json();
}

Deno.test("replication: acks count durable copies; a cut-off node's quorum writes get a 504 and converge after healing", async () => {
  const { network, nodes } = await startCluster();
  const [n1, n2, n3] = nodes;
  // Readiness counts lag reported from the follower's side (follower = this node).
  const followerLag: { lag: number; leader: string }[] = [];
  n3.node.events.on("replication.lag.changed", (e) => {
    if (e.follower === "n3") followerLag.push({ lag: e.lag, leader: e.leader });
  });
  try {
    const quorum = await put(n1, "a", { v: 1 }, "?ack=quorum");
    assert.equal(quorum.status, 200, JSON.stringify(quorum.body));
    assert.ok(Number(quorum.body.copies) >= 2);
    const all = await put(n2, "b", { v: 2 }, "?ack=all");
    assert.equal(all.status, 200, JSON.stringify(all.body));
    assert.equal(all.body.copies, 3);
    assert.match(String(all.body.token), /n2~[0-9a-f]{8}:1/);

    const before = await json(`${n1.url}/v1/status`);
    const bad = await put(n1, "c", { v: 3 }, "?ack=most");
    assert.equal(bad.status, 400);
    assert.equal((bad.body.error as { code: string }).code, "bad_query");
    assert.equal((await json(`${n1.url}/v1/status`)).lastLsn, before.lastLsn);

    network.isolate("n3");
    const minority = await put(n3, "x", { from: "n3" }, "?ack=quorum");
    assert.equal(minority.status, 504, JSON.stringify(minority.body));
    assert.equal(minority.body.copies, 1);
    assert.equal(minority.body.copiesNeeded, 2);
    assert.equal(minority.body.members, 3);
    const majority = await put(n1, "x", { from: "n1" }, "?ack=quorum");
    assert.equal(majority.status, 200);
    for (let i = 0; i < 50; i++) {
      assert.equal((await put(n2, `m${i}`, i, "?ack=quorum")).status, 200);
    }

    network.healAll();
    await waitFor("equal digests", () => digestsEqual(nodes));
    // The minority's write was kept (not rolled back) and replicated; one version of x wins everywhere.
    const x = await Promise.all(nodes.map((n) => fetch(`${n.url}/v1/kv/x`).then((r) => r.json())));
    assert.deepEqual(x[0], x[1]);
    assert.deepEqual(x[1], x[2]);
    const replicas = await json(`${n1.url}/v1/replicas`);
    assert.equal((replicas.replicas as unknown[]).length, 2);
    await waitFor(
      "n2 to report its lag behind n1 back at 0",
      () => Promise.resolve(followerLag.filter((e) => e.leader === "n1").at(-1)?.lag === 0),
    );
  } finally {
    await stopAll(nodes);
  }
});

Deno.test("replication: causal reads wait for the token, quorum reads return the newest and repair", async () => {
  const { network, nodes } = await startCluster();
  const [n1, n2, n3] = nodes;
  try {
    network.cut("n1", "n2");
    const write = await put(n1, "k", { v: "new" });
    assert.equal(write.status, 200);
    const token = String(write.body.token);
    // n2 gets it only through n3 (n1 -> n3 -> n2); the causal read waits for it.
    const causal = await fetch(
      `${n2.url}/v1/kv/k?consistency=causal&token=${encodeURIComponent(token)}`,
    );
    assert.equal(causal.status, 200);
    assert.deepEqual(await causal.json(), { v: "new" });
    const badToken = await fetch(`${n2.url}/v1/kv/k?consistency=causal&token=nope`);
    assert.equal(badToken.status, 400);
    await badToken.body?.cancel();
    const badLevel = await fetch(`${n2.url}/v1/kv/k?consistency=strong`);
    assert.equal(badLevel.status, 400);
    await badLevel.body?.cancel();

    network.healAll();
    network.isolate("n3");
    const newer = await put(n1, "k", { v: "newer" }, "?ack=quorum");
    assert.equal(newer.status, 200);
    network.healAll();
    const quorum = await fetch(`${n3.url}/v1/kv/k?consistency=quorum`);
    assert.equal(quorum.status, 200);
    assert.deepEqual(await quorum.json(), { v: "newer" });
    await waitFor(
      "n3 repaired",
      async () => (await fetch(`${n3.url}/v1/kv/k`).then((r) => r.json())).v === "newer",
    );
  } finally {
    await stopAll(nodes);
  }
});

Deno.test("replication: a node away past retention gets a snapshot, converges, and keeps it across a restart", async () => {
  const flags = {
    "value-bytes-max": "16384",
    "batch-bytes-max": String(64 * 1024),
    "segment-bytes": String(128 * 1024),
    "snapshot-every-bytes": String(64 * 1024),
    "snapshot-wal-percent": "0",
    "retain-bytes": "0",
  };
  const { network, nodes } = await startCluster(flags);
  const [n1, n2, n3] = nodes;
  try {
    network.isolate("n3");
    const value = { pad: "x".repeat(1000) };
    for (let i = 0; i < 400; i++) {
      assert.equal(
        (await put(i % 2 ? n1 : n2, `k${i}`, { ...value, i }, "?ack=quorum")).status,
        200,
      );
    }
    for (const n of [n1, n2]) {
      await waitFor(
        `${n.id} compacted its WAL`,
        async () => Number((await json(`${n.url}/v1/status`)).firstLsn) > 1,
      );
    }
    network.healAll();
    await waitFor("equal digests", () => digestsEqual(nodes), 20_000);
    // n3 got most of the 400 writes as snapshot state, not as log entries.
    assert.ok(Number((await json(`${n3.url}/v1/status`)).lastLsn) < 400);
    // Restart n3: the state the snapshot brought is durable.
    const dir = n3.dir;
    n3.transport.stop();
    await n3.node.stop();
    const again = await startNode(network, "n3", dir, flags);
    nodes[2] = again;
    const got = await fetch(`${again.url}/v1/kv/k0`);
    assert.equal(got.status, 200);
    assert.equal((await got.json()).i, 0);
    await waitFor("equal digests after restart", () => digestsEqual(nodes), 20_000);
  } finally {
    await stopAll(nodes);
  }
});

Deno.test("replication: a node restored in place from an older backup never reuses its sequence numbers", async () => {
  const { network, nodes } = await startCluster();
  const [n1, n2, n3] = nodes;
  const backups = await Deno.makeTempDir({ prefix: "shanghai-repl-backups-" });
  try {
    for (let i = 0; i < 5; i++) assert.equal((await put(n1, `old${i}`, i, "?ack=all")).status, 200);
    const backup = await runBackup({ addr: `127.0.0.1:${n1.node.httpPort}`, toDir: backups });
    // Written after the backup: every peer holds these, the backup does not.
    for (let i = 0; i < 5; i++) assert.equal((await put(n1, `mid${i}`, i, "?ack=all")).status, 200);

    const { origin } = await json(`${n1.url}/v1/status`);
    assert.match(String(origin), /^n1~[0-9a-f]{8}$/);
    // n1's disk dies; the operator restores its newest backup in place.
    n1.transport.stop();
    await n1.node.stop();
    await Deno.remove(n1.dir, { recursive: true });
    await runRestore({ from: backup.path, dataDir: n1.dir });
    network.isolate("n1");
    const restored = await startNode(network, "n1", n1.dir);
    nodes[0] = restored;
    const renewed = (await json(`${restored.url}/v1/status`)).origin;
    assert.match(String(renewed), /^n1~[0-9a-f]{8}$/);
    assert.notEqual(renewed, origin);
    // Cut off, the restored node takes a write before it has heard what its peers hold.
    const alone = await put(restored, "after", "restored", "?ack=one");
    assert.equal(alone.status, 200, JSON.stringify(alone.body));
    network.healAll();
    // Linked again, an ack=all write counts only copies that really hold it.
    const all = await put(restored, "after2", "restored", "?ack=all");
    assert.equal(all.status, 200, JSON.stringify(all.body));

    await waitFor("equal digests", () => digestsEqual(nodes), 20_000);
    for (const n of [restored, n2, n3]) {
      for (const key of ["old0", "mid4", "after", "after2"]) {
        const got = await fetch(`${n.url}/v1/kv/${key}`);
        assert.equal(got.status, 200, `${n.id} lacks ${key}`);
        await got.body?.cancel();
      }
    }
    // Past the restore point its LSNs number another log: no incremental onto the old chain.
    const next = await runBackup({
      addr: `127.0.0.1:${restored.node.httpPort}`,
      toDir: backups,
      incremental: true,
    });
    assert.equal(next.kind, "full");
    assert.match(String(next.fullReason), /restored or remade since/);
  } finally {
    await stopAll(nodes);
    await Deno.remove(backups, { recursive: true }).catch(() => {});
  }
});

Deno.test("replication: malformed and out-of-order frames are refused without effect; the change feed streams entries", async () => {
  const { nodes } = await startCluster();
  const [n1, n2] = nodes;
  try {
    assert.equal((await put(n1, "a", 1, "?ack=all")).status, 200);
    await waitFor(
      "n2 has a",
      async () => (await fetch(`${n2.url}/v1/kv/a`).then((r) => r.status)) === 200,
    );
    const before = await json(`${n2.url}/v1/status`);
    const frames: [string, unknown][] = [
      ["repl.batch", null],
      ["repl.batch", { v: 99, session: 1 }],
      ["repl.batch", batchBody({ fromLsn: 5, toLsn: 2 })],
      ["repl.batch", batchBody({ count: 1, records: new Uint8Array([9, 0, 0, 0, 1, 2, 3, 4, 5]) })],
      ["repl.batch", batchBody()],
      ["repl.ack", { v: 1, session: "x" }],
      ["repl.open", { v: 1, session: -1, firstLsn: 0, lastLsn: 0 }],
      ["repl.snap", {
        v: 1,
        session: 1,
        lsn: 1,
        index: 3,
        last: true,
        vv: {},
        records: new Uint8Array([1]),
      }],
      ["repl.read", { v: 1, id: 1, key: "" }],
      ["repl.repair", { v: 1, record: new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0]) }],
    ];
    const refusedBefore = Number((await json(`${n2.url}/v1/replicas`)).refusedFrames);
    for (const [type, body] of frames) n2.transport.deliver("n1", type, body);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const after = await json(`${n2.url}/v1/status`);
    assert.equal(after.lastLsn, before.lastLsn);
    assert.equal(
      Number((await json(`${n2.url}/v1/replicas`)).refusedFrames) - refusedBefore,
      frames.length,
    );
    // Replication still works after the garbage.
    assert.equal((await put(n1, "b", 2, "?ack=all")).status, 200);

    const feed = await fetch(`${n2.url}/v1/changes?from=1&limit=2`);
    assert.equal(feed.headers.get("content-type"), "application/x-ndjson");
    const lines = (await feed.text()).trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => l.key), ["a", "b"]);
    // A live feed: an entry written after the request arrives on the open stream.
    const live = await fetch(`${n1.url}/v1/changes?limit=1`);
    await put(n1, "later", 3);
    const [entry] = (await live.text()).trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(entry.key, "later");
  } finally {
    await stopAll(nodes);
  }
});
