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
