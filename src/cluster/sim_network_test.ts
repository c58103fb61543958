import assert from "node:assert/strict";
import { transportContract } from "../../tests/support/transport_contract.ts";
import { SimNetwork } from "./sim_network.ts";

transportContract("SimTransport", () => {
  const network = new SimNetwork({ seed: 1, delayMinMs: 5, delayMaxMs: 5 });
  const a = network.transport("a");
  const b = network.transport("b");
  return Promise.resolve({
    a,
    b,
    connect: () => {
      a.dial("b");
      return Promise.resolve();
    },
    dropB: () => {
      network.crash("b");
      return Promise.resolve();
    },
    settle: () => {
      network.advanceTo(network.nowMs + 10);
      return Promise.resolve();
    },
    cleanup: () => Promise.resolve(),
  });
});

Deno.test("SimNetwork drops, duplicates and partitions as told, and replays from its seed", () => {
  const run = (seed: number) => {
    const network = new SimNetwork({
      seed,
      dropRate: 0.2,
      duplicateRate: 0.2,
      delayMinMs: 1,
      delayMaxMs: 50,
    });
    const got: number[] = [];
    network.transport("b").handle("t", (_from, body) => got.push(body as number));
    network.transport("a").dial("b");
    for (let i = 0; i < 500; i++) network.transport("a").send("b", "t", i);
    network.advanceTo(100);
    return { got, stats: { ...network.stats } };
  };
  const first = run(42);
  assert.deepEqual(run(42), first);
  assert.ok(first.stats.dropped > 50 && first.stats.duplicated > 50, JSON.stringify(first.stats));
  assert.notDeepEqual(first.got, [...first.got].sort((x, y) => x - y), "delays reorder");

  const network = new SimNetwork({ seed: 1 });
  const downs: string[] = [];
  network.transport("a").onPeerDown((id) => downs.push(id));
  network.transport("b");
  network.transport("a").dial("b");
  network.partition([["a"], ["b"]]);
  assert.deepEqual(downs, ["b"]);
  assert.equal(network.transport("a").dial("b"), false);
  network.heal();
  assert.equal(network.transport("a").dial("b"), true);
});
