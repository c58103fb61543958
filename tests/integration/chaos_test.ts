/**
 * Faults mixed under load, on real processes: while twelve writers put, delete and overwrite
 * through every node, one node at a time (in one test, two) is SIGKILLed, stopped with SIGTERM
 * or SIGSTOPped and brought back, or (in one test) loses its data directory and starts fresh.
 * Small segments, snapshots and a short tombstone grace make retention, snapshot transfers and
 * tombstone collection happen during the run. Nothing
 * acknowledged with ack=quorum may be lost or come back after its delete, a quorum or causal
 * read right after a put must show it, and the nodes must converge.
 * scripts/soak.ts runs the same for longer and with any seed.
 */
import assert from "node:assert/strict";
import {
  CHAOS_NODE_ARGS,
  type ChaosLedger,
  type ChaosOptions,
  checkLedger,
  convergenceReport,
  faultsTotal,
  heldLessWarnings,
  PARTITION_FAULTS,
  runChaos,
} from "../support/chaos.ts";
import {
  createNetnsLink,
  enableIpForwarding,
  netnsAvailable,
  type NetnsLink,
} from "../support/netns.ts";
import { digestsEqual } from "../support/node_http.ts";
import { ProcessCluster } from "../support/process_cluster.ts";
import { waitForNodes } from "../support/wait.ts";

/** Starts n1-n3 in `cluster`, runs the chaos, and checks every node against its ledger. */
async function chaosChecked(
  cluster: ProcessCluster,
  options: Omit<ChaosOptions, "cluster" | "ids">,
): Promise<ChaosLedger> {
  const ids = ["n1", "n2", "n3"];
  await cluster.startReplicating(ids);
  const nodes = () => ids.map((id) => cluster.nodes.get(id)!);

  const ledger = await runChaos({ cluster, ids, ...options });
  const { counts } = ledger;
  const faults = faultsTotal(counts);
  assert.ok(faults >= (options.faultsMin ?? 0), `only ${faults} faults in the run`);
  assert.ok(counts.puts >= 1_000, `only ${counts.puts} acknowledged puts`);
  assert.ok(counts.deletes >= 100, `only ${counts.deletes} acknowledged deletes`);

  await waitForNodes("digests equal after the faults", () => digestsEqual(nodes()), 90_000)
    .catch(async (error) => {
      const report = await convergenceReport(nodes(), ledger);
      const logs = await cluster.writeLogs("shanghai-chaos-logs-");
      throw new Error(
        `${error.message}; counts ${
          JSON.stringify(counts)
        }\n${report}\nevery node process's log: ${logs}`,
      );
    });
  const check = await checkLedger(nodes(), ledger);
  assert.ok(counts.reads >= 50, `only ${counts.reads} reads back after puts`);
  assert.ok(counts.deletedReads >= 20, `only ${counts.deletedReads} reads of deleted keys`);
  assert.deepEqual(
    {
      missing: check.missing,
      resurrected: check.resurrected,
      wrong: check.wrong,
      staleReads: ledger.staleReads,
      heldLessWarnings: heldLessWarnings(cluster),
    },
    { missing: [], resurrected: [], wrong: [], staleReads: [], heldLessWarnings: [] },
    `counts ${JSON.stringify(counts)}`,
  );
  assert.equal(check.checked, ledger.acked.size - ledger.uncertain.size);
  return ledger;
}

/** {@link chaosChecked} on three nodes on loopback, torn down after. */
async function chaosOnLoopback(
  dirPrefix: string,
  options: Omit<ChaosOptions, "cluster" | "ids">,
): Promise<ChaosLedger> {
  const cluster = new ProcessCluster({ dirPrefix, args: [...CHAOS_NODE_ARGS] });
  try {
    return await chaosChecked(cluster, options);
  } finally {
    await cluster.teardown();
  }
}

Deno.test("real processes: SIGKILL, SIGTERM and SIGSTOP mixed under load lose no acknowledged write or delete, and the nodes converge", async () => {
  await chaosOnLoopback("shanghai-chaos-", {
    seed: 2026,
    durationMs: 20_000,
    faultGapMs: [2_000, 4_000],
    faultsMin: 3,
  });
});

Deno.test("real processes: two faults at once, on different nodes, lose no acknowledged write or delete, and the nodes converge", async () => {
  // With two of three nodes down or stopped, no majority is left: quorum writes fail (504)
  // until one comes back, and nothing acknowledged before may be lost.
  await chaosOnLoopback("shanghai-chaos-overlap-", {
    seed: 2028,
    durationMs: 20_000,
    faultGapMs: [1_000, 3_000],
    faultsMin: 4,
    overlap: 2,
  });
});

Deno.test("real processes: disks replaced under load (a data directory emptied, the node started fresh) lose no acknowledged write or delete, and the nodes converge", async () => {
  // A wipe waits until both peers hold all the node holds, so the ledger stays exact; the
  // fresh node must count every member from its first answer (its quorum reads are checked).
  const ledger = await chaosOnLoopback("shanghai-chaos-wipe-", {
    seed: 2029,
    durationMs: 20_000,
    faultGapMs: [1_500, 3_000],
    faultsMin: 3,
    faults: ["kill", "wipe", "wipe"],
  });
  assert.ok(ledger.counts.faults.wipe >= 1, `no wipe ran: ${JSON.stringify(ledger.counts)}`);
});

Deno.test({
  name:
    "real processes: partitions (a node cut off, two nodes split) mixed with SIGKILL, SIGTERM and SIGSTOP lose nothing acknowledged, and the nodes converge",
  ignore: !(await netnsAvailable()),
  fn: async () => {
    const links = new Map<string, NetnsLink>();
    const restoreForwarding = await enableIpForwarding();
    const cluster = new ProcessCluster({
      dirPrefix: "shanghai-chaos-part-",
      args: [...CHAOS_NODE_ARGS],
      placement: (id) => {
        const link = links.get(id)!;
        return { host: link.nsIp, netns: link.ns };
      },
    });
    try {
      for (const id of ["n1", "n2", "n3"]) links.set(id, await createNetnsLink());
      await chaosChecked(cluster, {
        seed: 2027,
        durationMs: 20_000,
        faultGapMs: [2_000, 4_000],
        faultsMin: 3,
        faults: PARTITION_FAULTS,
        links,
      });
    } finally {
      await cluster.teardown();
      for (const link of links.values()) await link.destroy();
      await restoreForwarding();
    }
  },
});
