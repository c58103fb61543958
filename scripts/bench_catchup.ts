/**
 * Catch-up benchmark: how fast a node that missed writes gets them back, and what each process
 * spends on it.
 *
 * Three Shanghai nodes on loopback. `--preload` keys (1 KiB values) are written to n1 and n2 and
 * reach all three; n3 stops cleanly (SIGTERM); 50 clients write `--writes` new keys to n1 and n2
 * at `ack=one`; n3 starts again on its directory. From its ready line until its version vector
 * covers what n1's held when n3 restarted, the script polls n3 every 20 ms and reads each
 * process's CPU time and minor page faults from /proc, and the follower's main thread's (its
 * event loop; helper threads such as the slab maker's are in the process's figures) (Linux only;
 * elsewhere those cells are n/a). The catch-up rate is the missed writes over that time, as in `deno task
 * bench:replication`'s catch-up row; the rate between 10% and 90% of the way leaves out the
 * start and the last stragglers.
 *
 * The follower's CPU per entry is what bounds the rate on our 2-core machines (docs/BENCHMARKS.md,
 * sessions 40 and 41), and most of the rest is page faults on fresh memory, so both are printed
 * beside it. Environment variables reach the nodes (GLIBC_TUNABLES, SHANGHAI_*), so a setting can
 * be compared by running the script twice.
 *
 * Run: deno task bench:catchup [--runs N] [--preload N] [--writes N]
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { VersionVector } from "../src/common/entry.ts";
import { type NodeProcess, spawnNode } from "../tests/support/node_process.ts";
import {
  expectOk,
  HttpClient,
  median,
  processCounters,
  runLoad,
  waitUntil,
} from "./_bench_load.ts";

const USAGE = `Usage: deno task bench:catchup [options]

  --runs N       repeat the whole measurement N times, each on fresh nodes (default 3)
  --preload N    keys every node holds before n3 stops (default 200000)
  --writes N     writes n3 misses while it is down (default 100000)
  -h, --help     show this help

Environment variables reach the nodes (for example GLIBC_TUNABLES or SHANGHAI_*).`;

const CLIENTS = 50;
const LOAD_MS_MAX = 600_000;
const POLL_MS = 20;
const CATCH_UP_MS_MAX = 600_000;
const VALUE = crypto.getRandomValues(new Uint8Array(1024));

type ProcessCounters = NonNullable<ReturnType<typeof processCounters>>;

function difference(
  before: ProcessCounters | undefined,
  after: ProcessCounters | undefined,
): ProcessCounters | undefined {
  return before && after
    ? { cpuMs: after.cpuMs - before.cpuMs, minorFaults: after.minorFaults - before.minorFaults }
    : undefined;
}

interface RunResult {
  missed: number;
  catchUpMs: number;
  firstEntryMs: number;
  rate: number;
  rate10to90: number;
  follower?: ProcessCounters;
  /** The follower's main thread alone: its event loop. */
  followerLoop?: ProcessCounters;
  leaders?: [ProcessCounters, ProcessCounters];
}

async function json(addr: string, path: string): Promise<Record<string, unknown>> {
  const response = await fetch(`http://${addr}${path}`);
  if (!response.ok) throw new Error(`GET ${path} on ${addr}: ${response.status}`);
  return await response.json();
}

/** The node's version vector (`GET /v1/replicas` carries it, without a digest's hashing). */
async function versionVector(addr: string): Promise<VersionVector> {
  return (await json(addr, "/v1/replicas")).versionVector as VersionVector;
}

/** Entries of `target` that `vv` holds, summed over origins. */
function held(vv: VersionVector, target: VersionVector): number {
  let sum = 0;
  for (const [origin, seq] of Object.entries(target)) sum += Math.min(vv[origin] ?? 0, seq);
  return sum;
}

async function oneRun(preload: number, writes: number): Promise<RunResult> {
  const dirs: string[] = [];
  const nodes: NodeProcess[] = [];
  const clients = new Map<string, HttpClient>();
  const put = async (addr: string, key: string) => {
    let client = clients.get(addr);
    if (client === undefined) clients.set(addr, client = new HttpClient(addr));
    expectOk(
      await client.request("PUT", `/v1/kv/${key}?ack=one`, {
        headers: ["content-type: application/octet-stream"],
        body: VALUE,
      }),
    );
  };
  const start = async (id: string, dir: string, seed?: NodeProcess) =>
    await spawnNode({
      dataDir: dir,
      args: [
        "--node-id",
        id,
        "--log-level",
        "info", // the ready line the harness waits for is at info
        ...(seed ? ["--join", `127.0.0.1:${seed.nodePort}`] : []),
      ],
    });
  try {
    for (let i = 0; i < 3; i++) dirs.push(await Deno.makeTempDir({ prefix: "bench-catchup-" }));
    const n1 = await start("n1", dirs[0]);
    const n2 = await start("n2", dirs[1], n1);
    nodes.push(n1, n2, await start("n3", dirs[2], n1));
    await waitUntil("n1 to replicate to both peers", async () => {
      const replicas = (await json(n1.addr, "/v1/replicas")).replicas as { status: string }[];
      return replicas.length === 2 && replicas.every((r) => r.status === "replicating");
    }, 30_000);
    const writeTo = (w: number) => (w % 2 ? n2 : n1).addr;
    const loaded = await runLoad(
      CLIENTS,
      LOAD_MS_MAX,
      preload,
      (w, i) => put(writeTo(w), `p-${i}`),
    );
    if (loaded.errors > 0) {
      throw new Error(`preload: ${loaded.errors} errors (${loaded.firstError})`);
    }
    const preloaded = await versionVector(n1.addr);
    await waitUntil(
      "n3 to hold the preload",
      async () => held(await versionVector(nodes[2].addr), preloaded) >= held(preloaded, preloaded),
      300_000,
    );
    await nodes[2].stop();
    const missed = await runLoad(CLIENTS, LOAD_MS_MAX, writes, (w, i) => put(writeTo(w), `c-${i}`));
    if (missed.errors > 0) {
      throw new Error(`writes: ${missed.errors} errors (${missed.firstError})`);
    }
    const target = await versionVector(n1.addr);
    const total = held(target, target);

    const n3 = await start("n3", dirs[2], n1);
    nodes[2] = n3;
    const pids = [n1.child.pid, n2.child.pid, n3.child.pid];
    const before = pids.map((pid) => processCounters(pid));
    const loopBefore = processCounters(n3.child.pid, n3.child.pid);
    const started = performance.now();
    const trace: [number, number][] = [];
    while (true) {
      const have = held(await versionVector(n3.addr), target);
      const at = performance.now() - started;
      trace.push([at, have]);
      if (have >= total) break;
      if (at > CATCH_UP_MS_MAX) throw new Error(`n3 held ${have} of ${total} after ${at} ms`);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    const catchUpMs = performance.now() - started;
    const after = pids.map((pid) => processCounters(pid));
    const loopAfter = processCounters(n3.child.pid, n3.child.pid);
    const base = trace[0][1];
    const reached = (share: number) =>
      trace.find(([, have]) => have - base >= share * (total - base))?.[0] ?? catchUpMs;
    const leaders = [difference(before[0], after[0]), difference(before[1], after[1])];
    return {
      missed: missed.ops,
      catchUpMs,
      firstEntryMs: reached(0.001),
      rate: missed.ops / (catchUpMs / 1000),
      rate10to90: 0.8 * (total - base) / ((reached(0.9) - reached(0.1)) / 1000),
      follower: difference(before[2], after[2]),
      followerLoop: difference(loopBefore, loopAfter),
      leaders: leaders[0] && leaders[1] ? [leaders[0], leaders[1]] : undefined,
    };
  } finally {
    for (const client of clients.values()) client.close();
    for (const node of nodes) await node.kill().catch(() => {});
    for (const dir of dirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

function fmt(n: number | undefined, digits = 0): string {
  return n === undefined || !Number.isFinite(n)
    ? "n/a"
    : n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function row(label: string, r: RunResult): string {
  const perEntry = (n: number | undefined, scale = 1) =>
    n === undefined ? undefined : n * scale / r.missed;
  return `| ${label} | ${fmt(r.rate)} | ${fmt(r.rate10to90)} | ${fmt(r.catchUpMs)} | ${
    fmt(r.firstEntryMs)
  } | ${fmt(r.follower?.cpuMs)} | ${fmt(perEntry(r.follower?.cpuMs, 1000), 1)} | ${
    fmt(perEntry(r.follower?.minorFaults), 2)
  } | ${fmt(perEntry(r.followerLoop?.cpuMs, 1000), 1)} | ${
    fmt(perEntry(r.followerLoop?.minorFaults), 2)
  } | ${r.leaders ? r.leaders.map((l) => fmt(l.cpuMs)).join(" / ") : "n/a"} | ${
    r.leaders ? r.leaders.map((l) => fmt(l.minorFaults)).join(" / ") : "n/a"
  } |`;
}

function positive(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) {
    console.error(`bench:catchup: --${name} must be a whole number of at least 1, not ${text}`);
    Deno.exit(2);
  }
  return n;
}

if (import.meta.main) {
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      options: {
        runs: { type: "string" },
        preload: { type: "string" },
        writes: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    console.error(`bench:catchup: ${(error as Error).message}\n\n${USAGE}`);
    Deno.exit(2);
  }
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const runs = positive("runs", values.runs, 3);
  const preload = positive("preload", values.preload, 200_000);
  const writes = positive("writes", values.writes, 100_000);
  const results: RunResult[] = [];
  for (let i = 0; i < runs; i++) {
    console.error(`[run ${i + 1}/${runs}] preload ${preload}, ${writes} missed writes`);
    results.push(await oneRun(preload, writes));
    console.error(`[run ${i + 1}/${runs}] ${fmt(results[i].rate)} entries/s`);
  }
  console.log(
    "| run | catch-up, entries/s | 10%-90%, entries/s | time, ms | first entry, ms | follower CPU, ms | follower CPU per entry, µs | follower faults per entry | its event loop: CPU per entry, µs | its event loop: faults per entry | leaders' CPU, ms | leaders' minor faults |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  results.forEach((r, i) => console.log(row(String(i + 1), r)));
  if (runs > 1) {
    console.log(
      `\nMedian catch-up: ${fmt(median(results.map((r) => r.rate)))} entries/s ` +
        `(${fmt(Math.min(...results.map((r) => r.rate)))}-${
          fmt(Math.max(...results.map((r) => r.rate)))
        }); target (issue 4): >= 50,000.`,
    );
  }
  const settings = ["GLIBC_TUNABLES", "SHANGHAI_PREFAULT_SLABS"]
    .filter((name) => Deno.env.get(name) !== undefined)
    .map((name) => `${name}=${Deno.env.get(name)}`);
  console.log(
    `\nCommand: deno task bench:catchup --runs ${runs} --preload ${preload} --writes ${writes}` +
      (settings.length > 0 ? ` (${settings.join(" ")})` : "") +
      `\n3 nodes on loopback (deno run main.ts serve, Deno ${Deno.version.deno}), ` +
      `${CLIENTS} clients, 1 KiB values, ack=one; CPU and faults from /proc over the catch-up; ` +
      `${navigator.hardwareConcurrency} cores.`,
  );
}
