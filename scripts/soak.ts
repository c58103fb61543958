/**
 * `deno task soak [--seconds N] [--seed N] [--writers N] [--partitions] [--faults LIST]
 * [--fault-gap-ms MIN-MAX] [--overlap 1|2]`: the chaos run of
 * tests/integration/chaos_test.ts for as long as asked. Three real nodes on loopback; twelve
 * writers put unique keys with ack=quorum, delete some with ack=quorum and overwrite shared keys
 * with ack=one through every node, while one node at a time is SIGKILLed, stopped with SIGTERM
 * or SIGSTOPped and brought back (`--faults term,kill --fault-gap-ms 300-1500` is the SIGTERM
 * storm that found session 24's stop hang; `--faults kill,term,wipe` replaces disks: a node's
 * data directory emptied and the node started fresh). Then it waits for the digests to agree and
 * checks every acknowledged put and delete on every node. Prints the faults as they end and a summary table;
 * exits 1 when anything acknowledged was lost or came back, or the nodes did not converge.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  CHAOS_NODE_ARGS,
  checkLedger,
  convergenceReport,
  type FaultKind,
  heldLessWarnings,
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
const FAULT_KINDS: readonly FaultKind[] = ["kill", "term", "stop", "cut", "split", "wipe", "leave"];
const NEEDS_PARTITIONS: readonly FaultKind[] = ["cut", "split"];
const FAULT_GAP_MS_MAX = 600_000;
const IDS = ["n1", "n2", "n3"];

function usage(message?: string): never {
  if (message) console.error(`soak: ${message}`);
  console.error(
    "usage: deno task soak [--seconds N (1-3600, default 120)] [--seed N] [--writers N]\n" +
      "         [--partitions] [--faults kill,term,stop,cut,split,wipe,leave]\n" +
      "         [--fault-gap-ms MIN-MAX]\n" +
      "  --faults: the kinds to pick from, equally likely (default kill,kill,term,stop, and\n" +
      "            kill,term,stop,cut,split,split with --partitions); cut and split need\n" +
      "            --partitions; wipe empties a node's data directory (a replaced disk) once\n" +
      "            its peers hold all it holds; leave is a wipe after `shanghai node leave`\n" +
      "  --fault-gap-ms: time between one fault's end and the next (default 3000-7000)\n" +
      "  --overlap: faults under way at once, each on other nodes (default 1)",
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
    faults: { type: "string" },
    "fault-gap-ms": { type: "string" },
    overlap: { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) usage();
const seconds = intFlag(values.seconds, "seconds", 120, SECONDS_MAX);
const seed = intFlag(values.seed, "seed", Date.now() % 1_000_000 + 1, 2 ** 31);
const writers = intFlag(values.writers, "writers", 12, 100);
const overlap = intFlag(values.overlap, "overlap", 1, IDS.length - 1);

const partitions = values.partitions === true;
const faults = faultsFlag(values.faults, partitions);
const faultGapMs = gapFlag(values["fault-gap-ms"]);
if (partitions && !(await netnsAvailable())) {
  usage("--partitions needs root and iproute2 (each node runs in a network namespace)");
}

/** `--faults a,b,...`: known kinds, cut and split only with --partitions. */
function faultsFlag(value: string | undefined, partitions: boolean): readonly FaultKind[] {
  if (value === undefined) return partitions ? PARTITION_FAULTS : PROCESS_FAULTS;
  const kinds = value.split(",").map((kind) => kind.trim());
  for (const kind of kinds) {
    if (!FAULT_KINDS.includes(kind as FaultKind)) {
      usage(`--faults: unknown fault "${kind}" (known: ${FAULT_KINDS.join(", ")})`);
    }
    if (!partitions && NEEDS_PARTITIONS.includes(kind as FaultKind)) {
      usage(`--faults: ${kind} needs --partitions`);
    }
  }
  return kinds as FaultKind[];
}

/** `--fault-gap-ms MIN-MAX` (or one number for both). */
function gapFlag(value: string | undefined): [number, number] | undefined {
  if (value === undefined) return undefined;
  const parts = value.split("-").map(Number);
  const [low, high] = parts.length === 1 ? [parts[0], parts[0]] : parts;
  if (
    parts.length > 2 || !Number.isInteger(low) || !Number.isInteger(high) || low < 0 ||
    high < low || high > FAULT_GAP_MS_MAX
  ) {
    usage(`--fault-gap-ms must be MIN-MAX, integers 0-${FAULT_GAP_MS_MAX} with MIN <= MAX`);
  }
  return [low, high];
}
console.log(
  `soak: 3 nodes, ${writers} writers, ${seconds} s, seed ${seed}${
    partitions ? ", partitions" : ""
  }${overlap === 1 ? "" : `, ${overlap} faults at once`}`,
);
console.log(
  `reproduce: deno task soak --seconds ${seconds} --seed ${seed} --writers ${writers}${
    partitions ? " --partitions" : ""
  }${values.faults === undefined ? "" : ` --faults ${faults.join(",")}`}${
    faultGapMs === undefined ? "" : ` --fault-gap-ms ${faultGapMs.join("-")}`
  }${overlap === 1 ? "" : ` --overlap ${overlap}`}`,
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
    faults,
    faultGapMs,
    overlap,
    links,
    onFault: (line) => console.log(`  ${line}`),
  }).catch(async (error) => {
    // A fault that failed (a node that would not stop or start): what each node said last.
    console.log(`soak FAILED: ${error}`);
    for (const node of nodes()) {
      for (const line of node.logs.slice(-8)) {
        console.log(`${node.nodeId} log: ${JSON.stringify(line)}`);
      }
    }
    // A node that exited on its own may leave no log line: its exit status says how it ended.
    for (const node of nodes()) {
      const status = await Promise.race([
        node.status,
        new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 100)),
      ]);
      if (status !== undefined) {
        console.log(
          `${node.nodeId} (pid ${node.child.pid}) exited: code ${status.code}, signal ${status.signal}`,
        );
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
  if (convergeMs === undefined) console.log(await convergenceReport(nodes(), ledger));
  const check = await checkLedger(nodes(), ledger);
  const regressions = heldLessWarnings(cluster);
  const { counts } = ledger;
  const rows: [string, string][] = [
    ["load, s", loadSeconds.toFixed(1)],
    [
      "faults: SIGKILL / SIGTERM / SIGSTOP / cut / split / wipe / leave",
      Object.values(counts.faults).join(" / "),
    ],
    ["puts acknowledged (ack=quorum) / failed", `${counts.puts} / ${counts.putsFailed}`],
    ["deletes acknowledged (ack=quorum) / failed", `${counts.deletes} / ${counts.deletesFailed}`],
    ["shared-key puts (ack=one) / failed", `${counts.sharedPuts} / ${counts.sharedPutsFailed}`],
    [
      "reads right after a put (quorum, causal): showed it / unfinished",
      `${counts.reads} / ${counts.readsUnfinished}`,
    ],
    ["quorum reads of a deleted key: 404", String(counts.deletedReads)],
    [
      "reads right after a put that did not show it, or of a deleted key that found it",
      String(ledger.staleReads.length),
    ],
    [
      "converged after the load, ms",
      convergeMs === undefined ? "NO (120 s)" : convergeMs.toFixed(0),
    ],
    ["keys checked on each node", String(check.checked)],
    ["acknowledged puts missing", String(check.missing.length)],
    ["acknowledged deletes come back", String(check.resurrected.length)],
    ["keys with another value", String(check.wrong.length)],
    [
      "restarted peers holding less than they had reported, or than peers held of them",
      String(regressions.length),
    ],
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
  for (const line of regressions.slice(0, 10)) console.log(`held less than reported: ${line}`);
  failed = convergeMs === undefined || check.missing.length > 0 || ledger.staleReads.length > 0 ||
    check.resurrected.length > 0 || check.wrong.length > 0 || regressions.length > 0;
  if (failed) {
    // Every process's whole log, for whoever looks into the failure.
    const dir = await cluster.writeLogs(`shanghai-soak-${seed}-logs-`);
    console.log(`every node process's log: ${dir}`);
  }
  console.log(failed ? "\nsoak FAILED" : "\nsoak passed");
} finally {
  await cluster.teardown();
  for (const link of links.values()) await link.destroy();
  await restoreForwarding?.();
}
Deno.exit(failed ? 1 : 0);
