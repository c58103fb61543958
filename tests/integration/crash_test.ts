/**
 * Promise 1: a node killed with SIGKILL at any moment restarts with every write it acknowledged.
 * Many concurrent clients write; the node is SIGKILLed at seeded random moments, restarted on the
 * same data directory, and every acknowledged write must be there with its value.
 */
import assert from "node:assert/strict";
import { Random } from "../../src/common/random.ts";
import { type NodeProcess, spawnNode, tempDir } from "../support/node_process.ts";

const CLIENTS = 32;
const KILLS = 4;
const SEED = Number(Deno.env.get("SEED") ?? 20261122);

async function listAll(node: NodeProcess): Promise<Map<string, unknown>> {
  const out = new Map<string, unknown>();
  let after = "";
  for (let page = 0; page < 1000; page++) {
    const res = await fetch(
      `http://${node.addr}/v1/kv?limit=10000&after=${encodeURIComponent(after)}`,
    );
    const body = await res.json();
    for (const item of body.items) out.set(item.key, item.value);
    if (body.next === null) return out;
    after = body.next;
  }
  throw new Error("listing did not end");
}

Deno.test("SIGKILL at random moments under concurrent writes loses no acknowledged write", async () => {
  const random = new Random(SEED);
  const dataDir = await tempDir();
  const acked = new Map<string, { c: number; i: number }>();
  let maxAckedLsn = 0;
  let node = await spawnNode({ dataDir, args: ["--node-id", "crash-1"] });
  try {
    for (let round = 0; round < KILLS; round++) {
      let stop = false;
      const writers = Array.from({ length: CLIENTS }, async (_, c) => {
        for (let i = 0; !stop && i < 100_000; i++) {
          const key = `r${round}-c${c}-${i}`;
          const value = { c, i };
          try {
            const res = await fetch(`http://${node.addr}/v1/kv/${key}`, {
              method: "PUT",
              headers: { "content-type": "application/json" },
              body: JSON.stringify(value),
            });
            if (res.status === 200) {
              const { lsn } = await res.json();
              acked.set(key, value);
              maxAckedLsn = Math.max(maxAckedLsn, lsn);
            } else {
              await res.body?.cancel();
            }
          } catch {
            return; // the node died under us: this write was never acknowledged
          }
        }
      });
      const killAfterMs = 150 + random.int(600);
      await new Promise((r) => setTimeout(r, killAfterMs));
      await node.kill("SIGKILL");
      stop = true;
      await Promise.all(writers);
      node = await spawnNode({ dataDir });
      const present = await listAll(node);
      const missing = [...acked.keys()].filter((k) => !present.has(k));
      assert.deepEqual(
        missing.slice(0, 10),
        [],
        `round ${round} (seed ${SEED}): ${missing.length} acknowledged writes lost`,
      );
      for (const [key, value] of acked) assert.deepEqual(present.get(key), value, key);
      const status = await (await fetch(`http://${node.addr}/v1/status`)).json();
      assert.ok(status.lastLsn >= maxAckedLsn, `lastLsn ${status.lastLsn} < acked ${maxAckedLsn}`);
    }
    console.log(`crash test: ${acked.size} acknowledged writes checked over ${KILLS} kills`);
    assert.ok(
      acked.size > KILLS * CLIENTS,
      `only ${acked.size} writes acknowledged: the test did not load the node`,
    );
  } finally {
    await node.kill("SIGKILL");
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("A full disk: writes fail with a 500 naming the cause, /ready says why, and a restart keeps every acknowledged write", async () => {
  const dataDir = await tempDir();
  try {
    // Files may not grow past 2 MiB (EFBIG, as a full disk gives ENOSPC), and without
    // preallocation a batch's own write meets the limit.
    const args = ["--wal-preallocate-bytes", "0", "--snapshot-every-bytes", "0"];
    const node = await spawnNode({ dataDir, args, fileBytesMax: 2 << 20 });
    const value = new Uint8Array(1024).fill(3);
    const acked: string[] = [];
    let refusal: { status: number; body: { error: { code: string; message: string } } } | undefined;
    // Eight writers at a time, until the disk refuses (about 1,900 values fit).
    for (let round = 0; round < 1_000 && refusal === undefined; round++) {
      await Promise.all(Array.from({ length: 8 }, async (_, w) => {
        const key = `full-${round}-${w}`;
        const response = await fetch(`${node.url}/v1/kv/${key}`, {
          method: "PUT",
          headers: { "content-type": "application/octet-stream" },
          body: value,
        });
        if (response.status === 200) {
          await response.body?.cancel();
          acked.push(key);
        } else refusal ??= { status: response.status, body: await response.json() };
      }));
    }
    assert.ok(refusal, "the disk filled up");
    assert.ok(acked.length > 1_000, `${acked.length} writes acknowledged first`);
    assert.equal(refusal.status, 500);
    assert.equal(refusal.body.error.code, "io");
    assert.match(refusal.body.error.message, /WAL stopped .*File too large.*restart the node/);
    const ready = await fetch(`${node.url}/ready`);
    assert.equal(ready.status, 503);
    assert.match(JSON.stringify(await ready.json()), /WAL stopped after an I\/O error/);
    await node.kill("SIGKILL");

    // With room again (no limit), every acknowledged write is there.
    const again = await spawnNode({ dataDir });
    try {
      const held = await listAll(again);
      const lost = acked.filter((key) => !held.has(key));
      assert.deepEqual(lost, [], `${lost.length} of ${acked.length} acknowledged writes lost`);
      const put = await fetch(`${again.url}/v1/kv/after`, {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: "1",
      });
      await put.body?.cancel();
      assert.equal(put.status, 200);
    } finally {
      await again.stop();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
