/**
 * Cluster membership benchmark: real `shanghai serve` processes on loopback.
 *
 * For 3, 5 and 7 nodes with heartbeats scaled to 100 ms (suspect 200 ms, down 300 ms: the
 * seed's 5 s / 10 s / 15 s divided by 50):
 * - detection: SIGKILL a node, time until every live node has logged it down (10 runs);
 * - join: a running standalone node is told to join (POST /v1/cluster/join, what
 *   `shanghai node join` does), time until every member has logged it joined (10 runs);
 * - gossip at rest: membership frame bytes sent + received per node per second.
 * Then gossip at rest for 7 nodes at the default timings (5 s heartbeats).
 * Times come from the nodes' own log timestamps, not from polling.
 *
 * Usage: deno task bench:cluster [--sizes 3,5,7] [--runs 10] [--rest-seconds 60]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type NodeProcess, spawnNode, tempDir } from "../tests/support/node_process.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    sizes: { type: "string", default: "3,5,7" },
    runs: { type: "string", default: "10" },
    "rest-seconds": { type: "string", default: "60" },
  },
});
const SIZES = values.sizes!.split(",").map(Number);
const RUNS = Number(values.runs);
const REST_DEFAULT_S = Number(values["rest-seconds"]);
const FAST = { heartbeatMs: 100, suspectMs: 200, downMs: 300 };

interface Timings {
  heartbeatMs: number;
  suspectMs: number;
  downMs: number;
}

const dirs: string[] = [];
const procs: NodeProcess[] = [];

function timingArgs(t: Timings): string[] {
  return [
    "--heartbeat-interval-ms",
    String(t.heartbeatMs),
    "--suspect-after-ms",
    String(t.suspectMs),
    "--down-after-ms",
    String(t.downMs),
  ];
}

async function spawn(
  id: string,
  t: Timings,
  join?: NodeProcess,
  dir?: string,
): Promise<NodeProcess> {
  const dataDir = dir ?? await tempDir("shanghai-bench-");
  if (!dir) dirs.push(dataDir);
  const node = await spawnNode({
    dataDir,
    args: [
      "--node-id",
      id,
      ...timingArgs(t),
      ...(join ? ["--join", `127.0.0.1:${join.nodePort}`] : []),
    ],
  });
  procs.push(node);
  return node;
}

async function view(node: NodeProcess) {
  return await (await fetch(`http://${node.addr}/v1/cluster/members`)).json();
}

async function waitFor(
  what: string,
  done: () => Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if (await done()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`Timed out waiting for ${what}`);
}

async function allUp(nodes: NodeProcess[], size: number): Promise<boolean> {
  for (const n of nodes) {
    const v = await view(n);
    if (v.members.filter((m: { state: string }) => m.state === "up").length !== size) return false;
  }
  return true;
}

/** Wall time of the first log line `msg` about `member` after `afterMs`, on `node`. */
function loggedAt(
  node: NodeProcess,
  msg: string,
  member: string,
  afterMs: number,
): number | undefined {
  for (const l of node.logs) {
    if (l.msg !== msg || l.member !== member) continue;
    const t = Date.parse(String(l.time));
    if (t >= afterMs) return t;
  }
  return undefined;
}

function stats(samples: number[]): { median: number; max: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  return { median: sorted[Math.floor((sorted.length - 1) / 2)], max: sorted[sorted.length - 1] };
}

async function gossipBytesPerSecond(
  nodes: NodeProcess[],
  seconds: number,
): Promise<{ median: number; max: number }> {
  const read = async () =>
    await Promise.all(nodes.map(async (n) => {
      const c = (await view(n)).transport.byKind.cluster ?? { sent: 0, received: 0 };
      return c.sent + c.received;
    }));
  const before = await read();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const after = await read();
  const elapsedS = (performance.now() - t0) / 1000;
  return stats(after.map((b, i) => (b - before[i]) / elapsedS));
}

async function stopAll(): Promise<void> {
  for (const p of procs.splice(0)) await p.kill("SIGKILL");
}

interface Row {
  nodes: number;
  detect: { median: number; max: number };
  join: { median: number; max: number };
  gossip: { median: number; max: number };
  falseDowns: number;
}

async function benchSize(size: number): Promise<Row> {
  const seed = await spawn("n1", FAST);
  const nodes = [seed];
  for (let i = 2; i <= size; i++) nodes.push(await spawn(`n${i}`, FAST, seed));
  await waitFor(`${size} nodes up`, () => allUp(nodes, size));
  const dirOf = new Map<string, string>();
  nodes.forEach((n, i) => dirOf.set(n.nodeId, dirs[dirs.length - size + i]));

  await new Promise((r) => setTimeout(r, 2 * FAST.heartbeatMs));
  const gossip = await gossipBytesPerSecond(nodes, 10);

  const detect: number[] = [];
  // When each node was dead: a "Member down" for it outside these intervals is a false down.
  const dead = new Map<string, [number, number][]>();
  for (let run = 0; run < RUNS; run++) {
    const victimIndex = 1 + (run % (size - 1));
    const victim = nodes[victimIndex];
    const live = nodes.filter((n) => n !== victim);
    const killedMs = Date.now();
    await victim.kill("SIGKILL");
    await waitFor(
      "victim down everywhere",
      () =>
        Promise.resolve(
          live.every((n) => loggedAt(n, "Member down", victim.nodeId, killedMs) !== undefined),
        ),
    );
    detect.push(
      Math.max(...live.map((n) => loggedAt(n, "Member down", victim.nodeId, killedMs)! - killedMs)),
    );
    const back = await spawn(victim.nodeId, FAST, seed, dirOf.get(victim.nodeId));
    dead.set(victim.nodeId, [...(dead.get(victim.nodeId) ?? []), [killedMs, Date.now()]]);
    nodes[victimIndex] = back;
    await waitFor("restarted node up everywhere", () => allUp(nodes, size));
  }

  const join: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const id = `j${run + 1}`;
    const newcomer = await spawn(id, FAST);
    const startedMs = Date.now();
    const response = await fetch(`http://${newcomer.addr}/v1/cluster/join`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ address: `127.0.0.1:${seed.nodePort}` }),
    });
    if (response.status !== 200) throw new Error(`join failed: ${await response.text()}`);
    await waitFor(
      "newcomer joined everywhere",
      () =>
        Promise.resolve(
          nodes.every((n) => loggedAt(n, "Member joined", id, startedMs - 1000) !== undefined),
        ),
    );
    join.push(
      Math.max(
        ...nodes.map((n) => loggedAt(n, "Member joined", id, startedMs - 1000)! - startedMs),
      ),
    );
    // Graceful leave keeps the cluster at `size` live members for the next run.
    await fetch(`http://${newcomer.addr}/v1/cluster/leave`, { method: "POST", body: "{}" }).then((
      r,
    ) => r.body?.cancel());
    await newcomer.status;
  }
  // Members declared down while they were running.
  let falseDowns = 0;
  for (const p of procs) {
    for (const l of p.logs) {
      if (l.msg !== "Member down") continue;
      const t = Date.parse(String(l.time));
      const intervals = dead.get(String(l.member)) ?? [];
      if (!intervals.some(([from, to]) => t >= from && t <= to)) {
        falseDowns++;
        if (Deno.env.get("BENCH_VERBOSE")) {
          console.error(`false down: ${p.nodeId} saw ${l.member} down at ${l.time}`);
        }
      }
    }
  }
  await stopAll();
  return { nodes: size, detect: stats(detect), join: stats(join), gossip, falseDowns };
}

try {
  const rows: Row[] = [];
  for (const size of SIZES) {
    console.error(`bench: ${size} nodes...`);
    rows.push(await benchSize(size));
  }
  console.error(`bench: 7 nodes at default timings, ${REST_DEFAULT_S} s at rest...`);
  const defaults = { heartbeatMs: 5000, suspectMs: 10_000, downMs: 15_000 };
  const seed = await spawn("d1", defaults);
  const nodes = [seed];
  for (let i = 2; i <= 7; i++) nodes.push(await spawn(`d${i}`, defaults, seed));
  await waitFor("7 nodes up", () => allUp(nodes, 7));
  // Let the join gossip die out (each update rides on about 9 messages) before measuring.
  await new Promise((r) => setTimeout(r, 2 * defaults.heartbeatMs));
  const restDefault = await gossipBytesPerSecond(nodes, REST_DEFAULT_S);
  await stopAll();

  const f = (n: number) => n.toFixed(0);
  const lines = [
    `Cluster membership, ${RUNS} runs per figure, heartbeat ${FAST.heartbeatMs} ms, suspect ${FAST.suspectMs} ms, down ${FAST.downMs} ms (${Deno.build.os}, ${navigator.hardwareConcurrency} cores)`,
    "",
    "| nodes | SIGKILL → down everywhere, median / max (ms) | target max (ms) | join → listed everywhere, median / max (ms) | target max (ms) | gossip at rest per node, median / max (B/s) | live members declared down |",
    "|---|---|---|---|---|---|---|",
    ...rows.map((r) =>
      `| ${r.nodes} | ${f(r.detect.median)} / ${f(r.detect.max)} | ${
        FAST.downMs + 2 * FAST.heartbeatMs
      } | ${f(r.join.median)} / ${f(r.join.max)} | ${3 * FAST.heartbeatMs} | ${
        f(r.gossip.median)
      } / ${f(r.gossip.max)} | ${r.falseDowns} |`
    ),
    "",
    `Gossip at rest, 7 nodes, default timings (5 s / 10 s / 15 s), over ${REST_DEFAULT_S} s: median ${
      f(restDefault.median)
    } B/s, max ${
      f(restDefault.max)
    } B/s per node (sent + received membership frame bytes; target < 1024 B/s)`,
    "",
    "Reproduce: deno task bench:cluster",
  ];
  console.log(lines.join("\n"));
} finally {
  await stopAll();
  for (const dir of dirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
}
