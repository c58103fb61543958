/**
 * Replication benchmark: 3 Shanghai nodes on loopback, 1 KiB values.
 *
 * - write ops/s, p50, p99 at ack=one|quorum|all with 10 and 50 clients (spread over the nodes),
 *   and ack=one on a single node for reference;
 * - replication delay (acknowledged at A -> applied at B, seen on B's change feed), p50/p99,
 *   at half the maximum write rate; a write B showed before A's answer arrived counts as 0;
 * - catch-up rate of a node that was down for 100,000 writes;
 * - the leaders' peak RSS and heap while a follower is SIGSTOPped under full load, over their
 *   peaks in the same load just before, and catch-up after SIGCONT;
 * - the same write load on a 3-member etcd cluster (HTTP gateway /v3/kv/put) and a 3-replica
 *   NATS JetStream file stream (publish with ack), with ratios.
 *
 * Run: deno task bench:replication   (BENCH_SECONDS=5, CATCHUP_WRITES=100000, STALL_SECONDS=30,
 *      BENCH_ONLY=shanghai,etcd,nats to run a subset)
 *
 * @module
 */
import { type NodeProcess, spawnNode } from "../tests/support/node_process.ts";
import {
  expectOk,
  freePort,
  HttpClient,
  type LoadResult,
  NatsClient,
  percentile,
  rssBytes,
  runLoad,
  waitUntil,
} from "./_bench_load.ts";

const SECONDS = Number(Deno.env.get("BENCH_SECONDS") ?? 5);
const DURATION_MS = SECONDS * 1000;
const CATCHUP_WRITES = Number(Deno.env.get("CATCHUP_WRITES") ?? 100_000);
const STALL_SECONDS = Number(Deno.env.get("STALL_SECONDS") ?? 30);
const ONLY = new Set((Deno.env.get("BENCH_ONLY") ?? "shanghai,etcd,nats").split(","));
const OPS_MAX = 2_000_000;
const VALUE = crypto.getRandomValues(new Uint8Array(1024));
const utf8 = new TextEncoder();
const CLIENTS = [10, 50];

const rows: string[][] = [];
const notes: string[] = [];
const tempDirs: string[] = [];
const children: { kill(): void }[] = [];

function fmt(n: number, digits = 0): string {
  return Number.isFinite(n) ? n.toFixed(digits) : "n/a";
}

function addRow(system: string, mode: string, clients: number, r: LoadResult): void {
  rows.push([
    system,
    mode,
    String(clients),
    fmt(r.opsPerSec),
    fmt(r.p50Ms, 2),
    fmt(r.p99Ms, 2),
    String(r.errors),
  ]);
  console.error(
    `${system} ${mode} c=${clients}: ${fmt(r.opsPerSec)} ops/s p50 ${fmt(r.p50Ms, 2)} p99 ${
      fmt(r.p99Ms, 2)
    } errors ${r.errors}${r.firstError ? ` (${r.firstError})` : ""}`,
  );
}

async function tempDir(prefix: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix });
  tempDirs.push(dir);
  return dir;
}

// ---- Shanghai ---------------------------------------------------------------------------------

/** A histogram as one scrape of a node shows it, over all its series (one per peer, say). */
interface Scraped {
  /** Cumulative bucket counts by upper bound. */
  buckets: Map<number, number>;
  sum: number;
}

/** The histogram `name` on the node at `addr`. */
async function histogram(addr: string, name: string): Promise<Scraped> {
  const text = await (await fetch(`http://${addr}/metrics`)).text();
  const bucketLine = new RegExp(`^${name}_bucket\\{.*le="([^"]+)"\\} (\\d+)`);
  const sumLine = new RegExp(`^${name}_sum\\{[^}]*\\} (\\S+)$`);
  const scraped: Scraped = { buckets: new Map(), sum: 0 };
  for (const line of text.split("\n")) {
    const bucket = bucketLine.exec(line);
    if (bucket) {
      const bound = bucket[1] === "+Inf" ? Infinity : Number(bucket[1]);
      scraped.buckets.set(bound, (scraped.buckets.get(bound) ?? 0) + Number(bucket[2]));
      continue;
    }
    const sum = sumLine.exec(line);
    if (sum) scraped.sum += Number(sum[1]);
  }
  return scraped;
}

/** {@link histogram} of every node, added up. */
async function clusterHistogram(
  nodes: readonly { addr: string }[],
  name: string,
): Promise<Scraped> {
  const total: Scraped = { buckets: new Map(), sum: 0 };
  for (const node of nodes) {
    const { buckets, sum } = await histogram(node.addr, name);
    for (const [bound, count] of buckets) {
      total.buckets.set(bound, (total.buckets.get(bound) ?? 0) + count);
    }
    total.sum += sum;
  }
  return total;
}

const APPLY_DELAY = "shanghai_replication_apply_delay";
const FSYNC_LATENCY = "shanghai_wal_fsync_latency";
const ACK_LATENCY = "shanghai_replication_ack_latency";

/**
 * The bucket bound a quantile of the samples between two scrapes falls under ("at most X ms"),
 * and how many samples there were.
 */
function bucketQuantiles(
  before: Map<number, number>,
  after: Map<number, number>,
  quantiles: number[],
): { count: number; bounds: number[] } {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const cumulative = bounds.map((b) => (after.get(b) ?? 0) - (before.get(b) ?? 0));
  const count = cumulative[cumulative.length - 1] ?? 0;
  return {
    count,
    bounds: quantiles.map((q) => bounds[cumulative.findIndex((c) => c >= q * count)] ?? NaN),
  };
}

async function json(addr: string, path: string): Promise<Record<string, unknown>> {
  const response = await fetch(`http://${addr}${path}`);
  return await response.json();
}

/**
 * Keep-alive clients by address, for every load below. Not `fetch`: it cost 110-170 µs of CPU
 * per write, on the same two cores as the nodes (docs/BENCHMARKS.md, session 15).
 */
const httpClients = new Map<string, HttpClient>();

function httpClient(addr: string): HttpClient {
  let client = httpClients.get(addr);
  if (!client) httpClients.set(addr, client = new HttpClient(addr));
  return client;
}

const PUT_HEADERS = ["content-type: application/octet-stream"];

async function putKv(addr: string, key: string, ack: string): Promise<void> {
  const answer = await httpClient(addr).request("PUT", `/v1/kv/${key}?ack=${ack}`, {
    headers: PUT_HEADERS,
    body: VALUE,
  });
  expectOk(answer);
}

async function startShanghai(
  id: string,
  dataDir: string,
  seed?: NodeProcess,
): Promise<NodeProcess> {
  const node = await spawnNode({
    dataDir,
    args: [
      "--node-id",
      id,
      "--log-level",
      "info",
      ...(seed ? ["--join", `127.0.0.1:${seed.nodePort}`] : []),
    ],
  });
  children.push({ kill: () => node.kill("SIGKILL") });
  return node;
}

async function allReplicating(nodes: NodeProcess[]): Promise<boolean> {
  for (const node of nodes) {
    const view = await json(node.addr, "/v1/replicas");
    const replicas = view.replicas as { status: string }[];
    if (
      replicas.length !== nodes.length - 1 ||
      replicas.some((r) => r.status === "down" || r.status === "opening")
    ) return false;
  }
  return true;
}

async function converged(nodes: NodeProcess[]): Promise<boolean> {
  const digests = await Promise.all(nodes.map((n) => json(n.addr, "/v1/digest")));
  return digests.every((d) => d.digest === digests[0].digest);
}

/** Peaks of the leaders' (n1, n2) memory in one window of the stall phase. */
interface MemoryWindow {
  rssPeak: number;
  heapPeak: number;
}

/** The larger `shanghai_process_heap_used_bytes` of `addrs` (NaN when one lacks the gauge). */
async function heapUsedBytes(addrs: string[]): Promise<number> {
  const values = await Promise.all(addrs.map(async (addr) => {
    const text = await (await fetch(`http://${addr}/metrics`)).text();
    const match = /^shanghai_process_heap_used_bytes\{[^}]*\} (\S+)$/m.exec(text);
    return match ? Number(match[1]) : NaN;
  }));
  return Math.max(...values);
}

/** The sum of every series of the counter or histogram count `name` on each node at `addrs`. */
async function metricSums(addrs: string[], name: string): Promise<number[]> {
  const series = new RegExp(`^${name}(?:_total)?\\{[^}]*\\} (\\S+)$`, "gm");
  return await Promise.all(addrs.map(async (addr) => {
    const text = await (await fetch(`http://${addr}/metrics`)).text();
    let sum = 0;
    for (const m of text.matchAll(series)) sum += Number(m[1]);
    return sum;
  }));
}

/**
 * Snapshots the nodes at `addrs` have sent to any follower so far
 * (`shanghai_replication_snapshots_sent`, every series summed). A follower whose resume point
 * retention removed gets a snapshot, then the tail: told apart from a catch-up from the WAL tail,
 * the time to catch up after a stall means something.
 */
async function snapshotsSent(addrs: string[]): Promise<number> {
  const counts = await metricSums(addrs, "shanghai_replication_snapshots_sent");
  return counts.reduce((a, b) => a + b, 0);
}

/**
 * Snapshots each node at `addrs` has written of its own state so far. Capturing a large
 * key-value view holds the event loop for tens of milliseconds, so a snapshot that falls in the
 * delay row's few seconds shows in its p99: the row says whether one did.
 */
async function snapshotsWritten(addrs: string[]): Promise<number[]> {
  return await metricSums(addrs, "shanghai_snapshot_duration_count");
}

/**
 * A follower SIGSTOPped for STALL_SECONDS under full load, against the same load just before
 * with every node up. One load runs through both windows without a pause (after a warm-up),
 * so both see the same heap and the same garbage collector: the leaders' RSS and heap grow
 * and shrink with the collector's cycles under load whether a follower stops or not, so the
 * stall's cost is the stall window's peak over the control window's peak.
 */
async function stallPhase(n1: NodeProcess, n2: NodeProcess, n3: NodeProcess): Promise<void> {
  const pids = [n1.child.pid, n2.child.pid];
  const addrs = [n1.addr, n2.addr];
  const idleRss = Math.max(...await Promise.all(pids.map(rssBytes)));
  // Overwrites of a fixed key set, so the key-value view does not grow: what grows during the
  // stall is buffering.
  const stallOp = (w: number, i: number) =>
    putKv((w % 2 ? n2 : n1).addr, `s-${w}-${i % 50}`, "one");
  const windows: Record<"control" | "stall", MemoryWindow> = {
    control: { rssPeak: 0, heapPeak: 0 },
    stall: { rssPeak: 0, heapPeak: 0 },
  };
  let current: MemoryWindow | undefined;
  const rssSampler = setInterval(() => {
    const window = current;
    Promise.all(pids.map(rssBytes)).then((all) => {
      if (window) window.rssPeak = Math.max(window.rssPeak, ...all);
    }).catch(() => {/* exited */});
  }, 250);
  const heapSampler = setInterval(() => {
    const window = current;
    heapUsedBytes(addrs).then((heap) => {
      if (window && Number.isFinite(heap)) window.heapPeak = Math.max(window.heapPeak, heap);
    }).catch(() => {/* busy or gone */});
  }, 1000);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const lastLsn = async () => Number((await json(n1.addr, "/v1/status")).lastLsn);
  let stallEntries = 0;
  let stalledTarget: Record<string, number> = {};
  const warmUpMs = 10_000;
  const load = runLoad(50, warmUpMs + 2 * STALL_SECONDS * 1000, OPS_MAX, stallOp);
  try {
    await sleep(warmUpMs);
    current = windows.control;
    await sleep(STALL_SECONDS * 1000);
    n3.child.kill("SIGSTOP");
    const lsnAtStop = await lastLsn();
    current = windows.stall;
    await sleep(STALL_SECONDS * 1000);
    current = undefined;
    stallEntries = (await lastLsn()) - lsnAtStop;
    stalledTarget = (await json(n1.addr, "/v1/digest")).versionVector as Record<string, number>;
  } finally {
    clearInterval(rssSampler);
    clearInterval(heapSampler);
  }
  const loadResult = await load;
  const snapshotsBefore = await snapshotsSent(addrs);
  n3.child.kill("SIGCONT");
  const resumeMs = await waitUntil("n3 to catch up after SIGCONT", async () => {
    const vv = (await json(n3.addr, "/v1/replicas")).versionVector as Record<string, number>;
    return Object.entries(stalledTarget).every(([o, seq]) => (vv[o] ?? 0) >= seq);
  }, 600_000);
  const snapshots = (await snapshotsSent(addrs)) - snapshotsBefore;
  const mib = (bytes: number) => fmt(bytes / 1048576, 1);
  const { control, stall } = windows;
  rows.push([
    "shanghai, 3 nodes",
    `follower SIGSTOPped ${STALL_SECONDS} s under load (${fmt(loadResult.opsPerSec)} writes/s)`,
    "50",
    `leader RSS peak ${stall.rssPeak >= control.rssPeak ? "+" : ""}${
      mib(stall.rssPeak - control.rssPeak)
    } MiB, heap peak ${stall.heapPeak >= control.heapPeak ? "+" : ""}${
      mib(stall.heapPeak - control.heapPeak)
    } MiB over the ${STALL_SECONDS} s before`,
    "-",
    "-",
    String(loadResult.errors),
  ]);
  notes.push(
    `SIGSTOP: leaders' RSS before the load ${mib(idleRss)} MiB; peak RSS with every node up ${
      mib(control.rssPeak)
    } MiB, with the follower stopped ${mib(stall.rssPeak)} MiB; peak heap used ${
      mib(control.heapPeak)
    } and ${mib(stall.heapPeak)} MiB; ${stallEntries} entries written during the stall; caught up ${
      fmt(resumeMs)
    } ms after SIGCONT (${
      snapshots > 0
        ? `the leaders sent ${snapshots} snapshot${
          snapshots > 1 ? "s" : ""
        }: retention had removed its resume point`
        : "from the leaders' WAL, no snapshot sent"
    })`,
  );
}

async function benchShanghai(): Promise<void> {
  // Single node reference.
  const soloDir = await tempDir("bench-solo-");
  const solo = await startShanghai("solo", soloDir);
  const single: Record<number, LoadResult> = {};
  for (const clients of CLIENTS) {
    single[clients] = await runLoad(
      clients,
      DURATION_MS,
      OPS_MAX,
      (_w, i) => putKv(solo.addr, `solo-${clients}-${i}`, "one"),
    );
    addRow("shanghai, 1 node", "ack=one", clients, single[clients]);
  }
  await solo.stop();

  const dirs = [await tempDir("bench-n1-"), await tempDir("bench-n2-"), await tempDir("bench-n3-")];
  const n1 = await startShanghai("n1", dirs[0]);
  const n2 = await startShanghai("n2", dirs[1], n1);
  let n3 = await startShanghai("n3", dirs[2], n1);
  const nodes = [n1, n2, n3];
  await waitUntil("3 nodes replicating", () => allReplicating(nodes), 30_000);
  // First, while the heaps are small: the rows below leave tens of thousands of 1 KiB values
  // in every node, and the collector's swings then move RSS by 50-65 MiB between two 30 s
  // windows of the same load with no follower stopped (docs/BENCHMARKS.md, session 8).
  await stallPhase(n1, n2, n3);
  await waitUntil("3 nodes replicating after the stall", () => allReplicating(nodes), 60_000);

  const results: Record<string, LoadResult> = {};
  for (const ack of ["one", "quorum", "all"]) {
    for (const clients of CLIENTS) {
      const acksBefore = await clusterHistogram(nodes, ACK_LATENCY);
      const r = await runLoad(
        clients,
        DURATION_MS,
        OPS_MAX,
        (w, i) => putKv(nodes[w % 3].addr, `w-${ack}-${clients}-${i}`, ack),
      );
      results[`${ack}/${clients}`] = r;
      addRow("shanghai, 3 nodes", `ack=${ack}`, clients, r);
      // What quorum and all writes wait for beyond their own node's sync: the followers' acks.
      const acksAfter = await clusterHistogram(nodes, ACK_LATENCY);
      const acks = bucketQuantiles(acksBefore.buckets, acksAfter.buckets, [0.5, 0.99]);
      const [p50, p99] = acks.bounds.map((bound) => fmt(bound, 2));
      const mean = (acksAfter.sum - acksBefore.sum) / acks.count;
      notes.push(
        `ack=${ack}, ${clients} clients: followers acked batches in p50 <= ${p50} ms, ` +
          `p99 <= ${p99} ms, mean ${fmt(mean, 2)} ms (${acks.count} batches; send -> ack, ` +
          `${ACK_LATENCY} of all nodes, bucket bounds)`,
      );
    }
  }
  for (const clients of CLIENTS) {
    notes.push(
      `shanghai ack=one (3 nodes) / single node at ${clients} clients: ${
        fmt(results[`one/${clients}`].opsPerSec / single[clients].opsPerSec, 2)
      }`,
    );
  }
  await waitUntil("convergence after the write phase", () => converged(nodes), 120_000);

  // Replication delay at half the maximum write rate: A's ack time -> B's change feed.
  const maxRate = Math.max(...CLIENTS.map((c) => results[`one/${c}`].opsPerSec));
  const rate = maxRate / 2;
  const feedFrom = Number((await json(n2.addr, "/v1/status")).lastLsn) + 1;
  const arrivals = new Map<string, number>();
  const feedAbort = new AbortController();
  const feed = fetch(`http://${n2.addr}/v1/changes?from=${feedFrom}`, { signal: feedAbort.signal })
    .then(async (response) => {
      const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
      let buffered = "";
      while (true) {
        const { done, value } = await reader.read();
        if (done) return;
        buffered += value;
        let nl;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          const match = /"key":"(d-\d+)"/.exec(line);
          if (match) arrivals.set(match[1], performance.now());
        }
      }
    }).catch(() => {});
  const delayBefore = await histogram(n2.addr, APPLY_DELAY);
  const fsyncBefore = await histogram(n2.addr, FSYNC_LATENCY);
  const snapshotsBefore = await snapshotsWritten([n1.addr, n2.addr]);
  const acked = new Map<string, number>();
  const delayWrites = Math.min(Math.round(rate * SECONDS), 50_000);
  const startedAt = performance.now();
  const inflight = new Set<Promise<void>>();
  for (let i = 0; i < delayWrites; i++) {
    const due = startedAt + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    while (inflight.size >= 50) await Promise.race(inflight);
    const key = `d-${i}`;
    const p = putKv(n1.addr, key, "one").then(() => {
      acked.set(key, performance.now());
    }).catch(() => {}).finally(() => inflight.delete(p));
    inflight.add(p);
  }
  await Promise.all(inflight);
  await waitUntil(
    "the feed to show every delay write",
    () => Promise.resolve(arrivals.size >= acked.size),
    60_000,
  ).catch(() => {});
  feedAbort.abort();
  await feed;
  // A leader ships before its own fdatasync, so B can show a write before A's answer reaches
  // this client: that write waited no time at B (0), and the note counts such writes.
  const rawDelays = [...acked].filter(([k]) => arrivals.has(k)).map(([k, t]) =>
    arrivals.get(k)! - t
  );
  const beforeAck = rawDelays.filter((d) => d < 0).length;
  const delays = rawDelays.map((d) => Math.max(0, d)).sort((a, b) => a - b);
  const achieved = delayWrites / ((performance.now() - startedAt) / 1000);
  const snapshotsDuring = (await snapshotsWritten([n1.addr, n2.addr]))
    .map((count, i) => count - snapshotsBefore[i]);
  // B's disk in the same window: a slow fdatasync there holds every entry of its batch.
  const syncs = bucketQuantiles(
    fsyncBefore.buckets,
    (await histogram(n2.addr, FSYNC_LATENCY)).buckets,
    [0.99],
  );
  const snapshotNote = `${beforeAck} of ${delays.length} seen at B before A's answer arrived; ` +
    `snapshots written meanwhile: A ${snapshotsDuring[0]}, B ${snapshotsDuring[1]}; ` +
    `B's fdatasync p99 <= ${fmt(syncs.bounds[0], 2)} ms over ${syncs.count} syncs`;
  // The same writes seen by B itself: from A's HLC wall time at the write until B applied
  // them (readable), without this process's HTTP client and the change feed in between.
  const applied = bucketQuantiles(
    delayBefore.buckets,
    (await histogram(n2.addr, APPLY_DELAY)).buckets,
    [0.5, 0.99],
  );
  rows.push([
    "shanghai, 3 nodes",
    `replication delay A->B, B's own shanghai_replication_apply_delay (${applied.count} entries; bucket bound)`,
    "-",
    "-",
    `<= ${fmt(applied.bounds[0], 1)}`,
    `<= ${fmt(applied.bounds[1], 1)}`,
    "0",
  ]);
  rows.push([
    "shanghai, 3 nodes",
    `replication delay A->B at ~${fmt(rate)} writes/s (achieved ${fmt(achieved)}; ${snapshotNote})`,
    "-",
    "-",
    fmt(percentile(delays, 0.5), 2),
    fmt(percentile(delays, 0.99), 2),
    String(acked.size - delays.length),
  ]);
  console.error(
    `delay p50 ${fmt(percentile(delays, 0.5), 2)} p99 ${
      fmt(percentile(delays, 0.99), 2)
    } over ${delays.length} writes (${snapshotNote})`,
  );

  // Catch-up: n3 is down while CATCHUP_WRITES land on n1 and n2.
  await n3.stop();
  const catchupLoad = await runLoad(
    50,
    600_000,
    CATCHUP_WRITES,
    (w, i) => putKv((w % 2 ? n2 : n1).addr, `c-${i}`, "one"),
  );
  console.error(
    `catch-up load: ${catchupLoad.ops} writes while n3 was down (${catchupLoad.errors} errors)`,
  );
  const target = await json(n1.addr, "/v1/digest");
  const restarted = performance.now();
  n3 = await startShanghai("n3", dirs[2], n1);
  nodes[2] = n3;
  const vvTarget = target.versionVector as Record<string, number>;
  const caughtUpMs = await waitUntil("n3 to catch up", async () => {
    const vv = (await json(n3.addr, "/v1/replicas")).versionVector as Record<string, number>;
    return Object.entries(vvTarget).every(([o, s]) => (vv[o] ?? 0) >= s);
  }, 600_000) + 0;
  const totalMs = performance.now() - restarted;
  rows.push([
    "shanghai, 3 nodes",
    `catch-up after ${catchupLoad.ops} missed writes`,
    "-",
    fmt(catchupLoad.ops / (caughtUpMs / 1000)) + " entries/s",
    "-",
    "-",
    "0",
  ]);
  notes.push(
    `catch-up: ${catchupLoad.ops} entries in ${
      fmt(caughtUpMs)
    } ms after the restarted node was ready (${fmt(totalMs)} ms including its start)`,
  );

  await waitUntil("final convergence", () => converged(nodes), 300_000);
  notes.push("final digests equal on all 3 nodes");
  for (const n of nodes) await n.stop();
  shanghaiQuorum50 = results["quorum/50"].opsPerSec;
  shanghaiByMode = results;
}

let shanghaiQuorum50 = NaN;
let shanghaiByMode: Record<string, LoadResult> = {};
const etcdByClients: Record<number, LoadResult> = {};
const natsByClients: Record<number, LoadResult> = {};

// ---- Members of the systems compared ----------------------------------------------------------

/**
 * Starts one `command` process per name, each in a temp dir of its own (`bench-<system>-<name>-*`)
 * and killed by the final clean-up if still running; `args(i, dir)` gives member i's arguments.
 */
async function startMembers(
  command: string,
  options: { system: string; names: string[]; args: (i: number, dir: string) => string[] },
): Promise<Deno.ChildProcess[]> {
  const procs: Deno.ChildProcess[] = [];
  for (let i = 0; i < options.names.length; i++) {
    const dir = await tempDir(`bench-${options.system}-${options.names[i]}-`);
    const child = new Deno.Command(command, {
      args: options.args(i, dir),
      stdout: "null",
      stderr: "null",
    }).spawn();
    procs.push(child);
    children.push({ kill: () => child.kill("SIGKILL") });
  }
  return procs;
}

/** Stops members with SIGTERM, one after the other, each waited for. */
async function stopMembers(procs: Deno.ChildProcess[]): Promise<void> {
  for (const p of procs) {
    p.kill("SIGTERM");
    await p.status;
  }
}

// ---- etcd -------------------------------------------------------------------------------------

async function benchEtcd(): Promise<void> {
  const names = ["e1", "e2", "e3"];
  const clientPorts = names.map(() => freePort());
  const peerPorts = names.map(() => freePort());
  const initial = names.map((n, i) => `${n}=http://127.0.0.1:${peerPorts[i]}`).join(",");
  const procs = await startMembers("etcd", {
    system: "etcd",
    names,
    args: (i, dir) => [
      "--name",
      names[i],
      "--data-dir",
      dir,
      "--listen-client-urls",
      `http://127.0.0.1:${clientPorts[i]}`,
      "--advertise-client-urls",
      `http://127.0.0.1:${clientPorts[i]}`,
      "--listen-peer-urls",
      `http://127.0.0.1:${peerPorts[i]}`,
      "--initial-advertise-peer-urls",
      `http://127.0.0.1:${peerPorts[i]}`,
      "--initial-cluster",
      initial,
      "--initial-cluster-state",
      "new",
      "--initial-cluster-token",
      "bench",
      "--log-level",
      "error",
    ],
  });
  const key = btoa("probe");
  await waitUntil("etcd to take writes", async () => {
    const r = await fetch(`http://127.0.0.1:${clientPorts[0]}/v3/kv/put`, {
      method: "POST",
      body: JSON.stringify({ key, value: key }),
    });
    await r.text();
    return r.ok;
  }, 30_000);
  const value = btoa(String.fromCharCode(...VALUE));
  for (const clients of CLIENTS) {
    const r = await runLoad(clients, DURATION_MS, OPS_MAX, async (w, i) => {
      const answer = await httpClient(`127.0.0.1:${clientPorts[w % 3]}`).request(
        "POST",
        "/v3/kv/put",
        { body: utf8.encode(JSON.stringify({ key: btoa(`w-${clients}-${i}`), value })) },
      );
      expectOk(answer);
    });
    etcdByClients[clients] = r;
    addRow("etcd 3.4, 3 members", "put (HTTP gateway)", clients, r);
  }
  await stopMembers(procs);
}

// ---- NATS JetStream ---------------------------------------------------------------------------

async function benchNats(): Promise<void> {
  const names = ["s1", "s2", "s3"];
  const clientPorts = names.map(() => freePort());
  const routePorts = names.map(() => freePort());
  const routes = routePorts.map((p) => `nats://127.0.0.1:${p}`).join(",");
  const procs = await startMembers("nats-server", {
    system: "nats",
    names,
    args: (i, dir) => [
      "-a",
      "127.0.0.1",
      "-p",
      String(clientPorts[i]),
      "-js",
      "-sd",
      dir,
      "-n",
      names[i],
      "--cluster_name",
      "bench",
      "--cluster",
      `nats://127.0.0.1:${routePorts[i]}`,
      "--routes",
      routes,
    ],
  });
  const admin = await waitUntil("nats to accept connections", async () => {
    (await NatsClient.connect(clientPorts[0])).close();
    return true;
  }, 30_000).then(() => NatsClient.connect(clientPorts[0]));
  const config = JSON.stringify({
    name: "BENCH",
    subjects: ["bench.>"],
    storage: "file",
    num_replicas: 3,
  });
  await waitUntil("the JetStream stream to be created", async () => {
    const reply = await Promise.race([
      admin.request("$JS.API.STREAM.CREATE.BENCH", utf8.encode(config)),
      new Promise<string>((r) => setTimeout(() => r("timeout"), 2000)),
    ]);
    return reply.includes('"config"') || reply.includes("already in use");
  }, 60_000);
  await waitUntil("the stream to take publishes", async () => {
    const reply = await Promise.race([
      admin.request("bench.probe", VALUE),
      new Promise<string>((r) => setTimeout(() => r("timeout"), 2000)),
    ]);
    return reply.includes('"seq"');
  }, 30_000);
  admin.close();
  for (const clients of CLIENTS) {
    const conns = await Promise.all(
      Array.from({ length: clients }, (_, w) => NatsClient.connect(clientPorts[w % 3])),
    );
    const r = await runLoad(clients, DURATION_MS, OPS_MAX, async (w, i) => {
      const reply = await conns[w].request(`bench.w${clients}.${i}`, VALUE);
      if (!reply.includes('"seq"')) throw new Error(reply.slice(0, 200));
    });
    for (const c of conns) c.close();
    natsByClients[clients] = r;
    addRow("NATS 2.9 JetStream, R3 file", "publish with ack", clients, r);
  }
  await stopMembers(procs);
}

// ---- main -------------------------------------------------------------------------------------

try {
  if (ONLY.has("etcd")) await benchEtcd();
  if (ONLY.has("nats")) await benchNats();
  if (ONLY.has("shanghai")) await benchShanghai();
} finally {
  for (const client of httpClients.values()) client.close();
  for (const c of children) {
    try {
      c.kill();
    } catch { /* exited */ }
  }
  for (const dir of tempDirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
}

for (const clients of CLIENTS) {
  for (const ack of ["one", "quorum", "all"]) {
    const s = shanghaiByMode[`${ack}/${clients}`]?.opsPerSec;
    if (s === undefined) continue;
    if (etcdByClients[clients]) {
      notes.push(
        `ack=${ack}, ${clients} clients: ${fmt(s / etcdByClients[clients].opsPerSec, 2)}x etcd`,
      );
    }
    if (natsByClients[clients]) {
      notes.push(
        `ack=${ack}, ${clients} clients: ${
          fmt(s / natsByClients[clients].opsPerSec, 2)
        }x NATS JetStream`,
      );
    }
  }
}
void shanghaiQuorum50;

const header = ["system", "mode", "clients", "ops/s", "p50 ms", "p99 ms", "errors"];
console.log(
  `## Replication benchmark (${SECONDS} s per row, 1 KiB values, loopback, ${navigator.hardwareConcurrency} cores)\n`,
);
console.log(`| ${header.join(" | ")} |`);
console.log(`| ${header.map(() => "---").join(" | ")} |`);
for (const row of rows) console.log(`| ${row.join(" | ")} |`);
console.log("");
for (const note of notes) console.log(`- ${note}`);
console.log(
  `\nReproduce: deno task bench:replication  (BENCH_SECONDS=${SECONDS} CATCHUP_WRITES=${CATCHUP_WRITES} STALL_SECONDS=${STALL_SECONDS})`,
);
