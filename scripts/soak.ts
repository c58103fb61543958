/**
 * `deno task soak [--seconds N] [--seed N] [--writers N]`: the chaos run of
 * tests/integration/chaos_test.ts for as long as asked. Three real nodes on loopback; twelve
 * writers put unique keys with ack=quorum, delete some with ack=quorum and overwrite shared keys
 * with ack=one through every node, while one node at a time is SIGKILLed, stopped with SIGTERM
 * or SIGSTOPped and brought back. Then it waits for the digests to agree and checks every
 * acknowledged put and delete on every node. Prints the faults as they end and a summary table;
 * exits 1 when anything acknowledged was lost or came back, or the nodes did not converge.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  CHAOS_NODE_ARGS,
  checkLedger,
  PARTITION_FAULTS,
  PROCESS_FAULTS,
  runChaos,
} from "../tests/support/chaos.ts";
import {
  createNetnsLink,
  enableIpForwarding,
  netnsAvailable,
  type NetnsLink,
} from "../tests/support/netns.ts";
import { digestsEqual } from "../tests/support/node_http.ts";
import { ProcessCluster } from "../tests/support/process_cluster.ts";
import { waitForNodes } from "../tests/support/wait.ts";

const SECONDS_MAX = 3_600;
const IDS = ["n1", "n2", "n3"];

function usage(message?: string): never {
  if (message) console.error(`soak: ${message}`);
  console.error(
    "usage: deno task soak [--seconds N (1-3600, default 120)] [--seed N] [--writers N]",
  );
  Deno.exit(2);
}

function intFlag(value: string | undefined, name: string, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max) usage(`--${name} must be an integer 1-${max}`);
  return n;
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string" },
    seed: { type: "string" },
    writers: { type: "string" },
    partitions: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) usage();
const seconds = intFlag(values.seconds, "seconds", 120, SECONDS_MAX);
const seed = intFlag(values.seed, "seed", Date.now() % 1_000_000 + 1, 2 ** 31);
const writers = intFlag(values.writers, "writers", 12, 100);

const partitions = values.partitions === true;
if (partitions && !(await netnsAvailable())) {
  usage("--partitions needs root and iproute2 (each node runs in a network namespace)");
}
console.log(
  `soak: 3 nodes, ${writers} writers, ${seconds} s, seed ${seed}${
    partitions ? ", partitions" : ""
  }`,
);
console.log(
  `reproduce: deno task soak --seconds ${seconds} --seed ${seed} --writers ${writers}${
    partitions ? " --partitions" : ""
  }`,
);
const links = new Map<string, NetnsLink>();
const restoreForwarding = partitions ? await enableIpForwarding() : undefined;
const cluster = new ProcessCluster({
  dirPrefix: "shanghai-soak-",
  args: [...CHAOS_NODE_ARGS],
  placement: partitions
    ? (id) => ({ host: links.get(id)!.nsIp, netns: links.get(id)!.ns })
    : undefined,
});
let failed = true;
try {
  if (partitions) { for (const id of IDS) links.set(id, await createNetnsLink()); }
  await cluster.startReplicating(IDS);
  const nodes = () => IDS.map((id) => cluster.nodes.get(id)!);

  const started = performance.now();
  const ledger = await runChaos({
    cluster,
    ids: IDS,
    seed,
    writers,
    durationMs: seconds * 1000,
    faults: partitions ? PARTITION_FAULTS : PROCESS_FAULTS,
    links,
    onFault: (line) => console.log(`  ${line}`),
  }).catch((error) => {
    // A fault that failed (a node that would not stop or start): what each node said last.
    console.log(`soak FAILED: ${error}`);
    for (const node of nodes()) {
      for (const line of node.logs.slice(-8)) {
        console.log(`${node.nodeId} log: ${JSON.stringify(line)}`);
      }
    }
    throw error;
  });
  const loadSeconds = (performance.now() - started) / 1000;
  const convergeMs = await waitForNodes(
    "digests equal after the faults",
    () => digestsEqual(nodes()),
    120_000,
  ).catch(() => undefined);
  if (convergeMs === undefined) {
    // What each node says of its streams, for whoever looks into the failure.
    for (const node of nodes()) {
      const view = await (await fetch(`${node.url}/v1/replicas`)).json().catch((e) => String(e));
      console.log(`${node.nodeId} /v1/replicas: ${JSON.stringify(view)}`);
      const warnings = node.logs.filter((l) => l.level === "warn" || l.level === "error");
      for (const line of warnings.slice(-15)) {
        console.log(`${node.nodeId} log: ${JSON.stringify(line)}`);
      }
    }
  }
  const check = await checkLedger(nodes(), ledger);
  const { counts } = ledger;
  const rows: [string, string][] = [
    ["load, s", loadSeconds.toFixed(1)],
    [
      "faults: SIGKILL / SIGTERM / SIGSTOP / cut / split",
      Object.values(counts.faults).join(" / "),
    ],
    ["puts acknowledged (ack=quorum) / failed", `${counts.puts} / ${counts.putsFailed}`],
    ["deletes acknowledged (ack=quorum) / failed", `${counts.deletes} / ${counts.deletesFailed}`],
    ["shared-key puts (ack=one) / failed", `${counts.sharedPuts} / ${counts.sharedPutsFailed}`],
    [
      "reads right after a put (quorum, causal): showed it / unfinished",
      `${counts.reads} / ${counts.readsUnfinished}`,
    ],
    ["reads right after a put that did not show it", String(ledger.staleReads.length)],
    [
      "converged after the load, ms",
      convergeMs === undefined ? "NO (120 s)" : convergeMs.toFixed(0),
    ],
    ["keys checked on each node", String(check.checked)],
    ["acknowledged puts missing", String(check.missing.length)],
    ["acknowledged deletes come back", String(check.resurrected.length)],
    ["keys with another value", String(check.wrong.length)],
  ];
  const width = Math.max(...rows.map(([name]) => name.length));
  console.log("");
  for (const [name, value] of rows) console.log(`${name.padEnd(width)}  ${value}`);
  for (const [what, keys] of Object.entries(check)) {
    if (Array.isArray(keys) && keys.length > 0) {
      console.log(`${what}: ${keys.slice(0, 10).join(", ")}`);
    }
  }
  if (ledger.staleReads.length > 0) {
    console.log(`stale reads: ${ledger.staleReads.slice(0, 10).join(", ")}`);
  }
  failed = convergeMs === undefined || check.missing.length > 0 || ledger.staleReads.length > 0 ||
    check.resurrected.length > 0 || check.wrong.length > 0;
  console.log(failed ? "\nsoak FAILED" : "\nsoak passed");
} finally {
  await cluster.teardown();
  for (const link of links.values()) await link.destroy();
  await restoreForwarding?.();
}
Deno.exit(failed ? 1 : 0);
