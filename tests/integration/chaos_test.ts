/**
 * Faults mixed under load, on real processes: while twelve writers put, delete and overwrite
 * through every node, one node at a time is SIGKILLed, stopped with SIGTERM or SIGSTOPped and
 * brought back. Small segments, snapshots and a short tombstone grace make retention, snapshot
 * transfers and tombstone collection happen during the run. Nothing acknowledged with
 * ack=quorum may be lost or come back after its delete, and the nodes must converge.
 * scripts/soak.ts runs the same for longer and with any seed.
 */
import assert from "node:assert/strict";
import { CHAOS_NODE_ARGS, checkLedger, runChaos } from "../support/chaos.ts";
import { digestsEqual, replicating } from "../support/node_http.ts";
import { ProcessCluster } from "../support/process_cluster.ts";
import { waitForNodes } from "../support/wait.ts";

Deno.test("real processes: SIGKILL, SIGTERM and SIGSTOP mixed under load lose no acknowledged write or delete, and the nodes converge", async () => {
  const cluster = new ProcessCluster({ dirPrefix: "shanghai-chaos-", args: [...CHAOS_NODE_ARGS] });
  try {
    const ids = ["n1", "n2", "n3"];
    const seed = await cluster.start("n1");
    await cluster.start("n2", seed);
    await cluster.start("n3", seed);
    const nodes = () => ids.map((id) => cluster.nodes.get(id)!);
    await waitForNodes("3 nodes replicating", () => replicating(nodes()));

    const ledger = await runChaos({
      cluster,
      ids,
      seed: 2026,
      durationMs: 20_000,
      faultGapMs: [2_000, 4_000],
      faultsMin: 3,
    });
    const { counts } = ledger;
    const faults = counts.faults.kill + counts.faults.term + counts.faults.stop;
    assert.ok(faults >= 3, `only ${faults} faults in the run`);
    assert.ok(counts.puts >= 1_000, `only ${counts.puts} acknowledged puts`);
    assert.ok(counts.deletes >= 100, `only ${counts.deletes} acknowledged deletes`);

    await waitForNodes("digests equal after the faults", () => digestsEqual(nodes()), 90_000);
    const check = await checkLedger(nodes(), ledger);
    assert.deepEqual(
      { missing: check.missing, resurrected: check.resurrected, wrong: check.wrong },
      { missing: [], resurrected: [], wrong: [] },
      `counts ${JSON.stringify(counts)}`,
    );
    assert.equal(check.checked, ledger.acked.size - ledger.uncertain.size);
  } finally {
    await cluster.teardown();
  }
});
