/**
 * `deno task bench:ops [--quick]`: what operations cost.
 *
 * 1. Write throughput with telemetry on versus off, through HTTP: three `shanghai serve`
 *    processes, one with `--metrics off` and no OTEL_*, one with metrics on, one with metrics on
 *    and OTEL_EXPORTER_OTLP_ENDPOINT at a loopback sink (metrics pushed every second, a span for
 *    every request and WAL commit). Rounds rotate the order; the median counts. The disk and the
 *    other tenants of the machine make single rounds noisy, so the table shows the spread too.
 * 2. The CPU the telemetry handlers cost per request, measured directly (emitting the events a
 *    request causes through the bus, with and without the subscribers), which noise cannot hide.
 * 3. Backup and restore speed for a data directory of 1 GiB (64 MiB with --quick): online
 *    backup of a running node into a fresh folder, then restore into an empty directory.
 *
 * Bounded: every loop has a fixed count.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { runBackup } from "../src/backup/backup.ts";
import { runRestore } from "../src/backup/restore.ts";
import { GiB, MiB } from "../src/common/limits.ts";
import { median, processCounters } from "./_bench_load.ts";
import { Store } from "../src/storage/kv/store.ts";
import { EventBus } from "../src/telemetry/events.ts";
import { Metrics } from "../src/telemetry/metrics.ts";
import { Tracing } from "../src/telemetry/tracing.ts";
import { spawnNode } from "../tests/support/node_process.ts";

const { values } = parseArgs({ args: Deno.args, options: { quick: { type: "boolean" } } });
const QUICK = values.quick ?? false;
const HTTP_WRITES = QUICK ? 2000 : 5000;
const HTTP_CONCURRENCY = 32;
const ROUNDS = QUICK ? 3 : 7;
const EMIT_REQUESTS = 200_000;
/** Entries per WAL batch assumed when charging batch events to requests. */
const ENTRIES_PER_BATCH = 16;
const DATA_BYTES = QUICK ? 64 * MiB : 1 * GiB;
const FILL_VALUE_BYTES = 64 * 1024;

type Mode = "off" | "metrics" | "metrics+traces" | "metrics+traces always_on";
const MODES: Mode[] = ["off", "metrics", "metrics+traces", "metrics+traces always_on"];

/** OTEL_* for the modes that export traces (the default sampler, or every span). */
function traceEnv(mode: Mode, sinkUrl: string): Record<string, string> | undefined {
  const base = { OTEL_EXPORTER_OTLP_ENDPOINT: sinkUrl, OTEL_METRIC_EXPORT_INTERVAL: "1000" };
  if (mode === "metrics+traces") return base;
  if (mode === "metrics+traces always_on") return { ...base, OTEL_TRACES_SAMPLER: "always_on" };
  return undefined;
}

function perMode<T>(make: () => T): Record<Mode, T> {
  return Object.fromEntries(MODES.map((m) => [m, make()])) as Record<Mode, T>;
}

function pct(on: number, off: number): string {
  return `${(((off - on) / off) * 100).toFixed(1)}%`;
}

/** An OTLP/HTTP sink on loopback that reads and drops everything, counting requests. */
function startSink(): { url: string; requests: () => number; stop: () => Promise<void> } {
  let requests = 0;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (request) => {
      await request.arrayBuffer();
      requests++;
      return new Response("{}", { headers: { "content-type": "application/json" } });
    },
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    requests: () => requests,
    stop: () => server.shutdown(),
  };
}

/** CPU time (user + system) a process has used, in µs, from /proc (Linux clock ticks of 10 ms). */
function cpuMicros(pid: number): number {
  const counters = processCounters(pid);
  if (counters === undefined) throw new Error(`Cannot read /proc/${pid}/stat`);
  return counters.cpuMs * 1000;
}

async function httpRound(addr: string, round: number): Promise<number> {
  let next = 0;
  const body = JSON.stringify("x".repeat(100));
  const started = performance.now();
  const worker = async () => {
    while (next < HTTP_WRITES) {
      const i = next++;
      const response = await fetch(`http://${addr}/v1/kv/r${round}-${i}`, {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body,
      });
      if (response.status !== 200) throw new Error(`PUT answered ${response.status}`);
      await response.body?.cancel();
    }
  };
  await Promise.all(Array.from({ length: HTTP_CONCURRENCY }, worker));
  return HTTP_WRITES / ((performance.now() - started) / 1000);
}

async function benchHttp(
  root: string,
): Promise<{ rates: Record<Mode, number[]>; cpu: Record<Mode, number[]>; sinkRequests: number }> {
  const sink = startSink();
  const nodes = {} as Record<Mode, Awaited<ReturnType<typeof spawnNode>>>;
  for (const [i, mode] of MODES.entries()) {
    nodes[mode] = await spawnNode({
      dataDir: `${root}/http-${i}`,
      args: ["--metrics", mode === "off" ? "off" : "on"],
      env: traceEnv(mode, sink.url),
    });
  }
  const rates = perMode<number[]>(() => []);
  const cpu = perMode<number[]>(() => []);
  try {
    for (const mode of MODES) await httpRound(nodes[mode].addr, -1); // warm up
    for (let round = 0; round < ROUNDS; round++) {
      // Rotate the order so drift (page cache, other tenants) hits every mode alike.
      for (let k = 0; k < MODES.length; k++) {
        const mode = MODES[(round + k) % MODES.length];
        const pid = nodes[mode].child.pid;
        const cpuBefore = cpuMicros(pid);
        rates[mode].push(await httpRound(nodes[mode].addr, round));
        cpu[mode].push((cpuMicros(pid) - cpuBefore) / HTTP_WRITES);
      }
    }
    const scrape = await fetch(`http://${nodes.metrics.addr}/metrics`).then((r) => r.text());
    if (!scrape.includes("shanghai_wal_write_latency_count")) {
      throw new Error("the metrics node has no WAL metrics");
    }
  } finally {
    for (const node of Object.values(nodes)) await node.stop();
  }
  const sinkRequests = sink.requests();
  await sink.stop();
  if (sinkRequests === 0) throw new Error("the OTLP sink received nothing: telemetry was not on");
  return { rates, cpu, sinkRequests };
}

/** Microseconds per request spent emitting its events to the subscribers of `mode`. */
async function emitCost(mode: Mode, sinkUrl: string): Promise<number> {
  const events = new EventBus();
  const metrics = mode === "off" ? undefined : new Metrics({ events, env: {} });
  const env = traceEnv(mode, sinkUrl);
  const tracing = env ? new Tracing({ events, env }) : undefined;
  const started = performance.now();
  for (let i = 0; i < EMIT_REQUESTS; i++) {
    events.emit("http.request.completed", {
      method: "PUT",
      route: "/v1/kv/:key{.+}",
      status: 200,
      durationMs: 1.2,
    });
    if (i % ENTRIES_PER_BATCH === 0) {
      events.emit("wal.write.completed", {
        durationMs: 2,
        syncMs: 1,
        bytes: 4000,
        entries: ENTRIES_PER_BATCH,
        gatherMs: 0,
      });
    }
    // Yield now and then so the span exporter runs inside the measured time, as in a node.
    if (i % 1000 === 999) await new Promise((r) => setTimeout(r, 0));
  }
  await tracing?.flush();
  const micros = ((performance.now() - started) * 1000) / EMIT_REQUESTS;
  await metrics?.shutdown();
  await tracing?.shutdown();
  return micros;
}

async function benchEmit(): Promise<Record<Mode, number>> {
  const sink = startSink();
  const out = perMode<number[]>(() => []);
  try {
    for (let round = 0; round < 3; round++) {
      for (const mode of MODES) out[mode].push(await emitCost(mode, sink.url));
    }
  } finally {
    await sink.stop();
  }
  return Object.fromEntries(MODES.map((m) => [m, median(out[m])])) as Record<Mode, number>;
}

async function dirBytes(path: string): Promise<number> {
  let total = 0;
  for await (const item of Deno.readDir(path)) {
    const full = `${path}/${item.name}`;
    if (item.isDirectory) total += await dirBytes(full);
    else if (item.isFile) total += (await Deno.stat(full)).size;
  }
  return total;
}

async function benchBackup(root: string): Promise<Record<string, number>> {
  const dataDir = `${root}/big`;
  // Appends of 64 KiB go to the WAL only and the store never snapshots, so the whole data
  // directory (~DATA_BYTES of WAL) is what a full backup must carry.
  const store = await Store.open({
    dataDir,
    nodeId: "bench-big",
    retainBytes: 64 * GiB,
    snapshotEveryBytes: 0,
  });
  const value = crypto.getRandomValues(new Uint8Array(FILL_VALUE_BYTES));
  const count = Math.ceil(DATA_BYTES / FILL_VALUE_BYTES);
  let next = 0;
  const fillStarted = performance.now();
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (next < count) {
      next++;
      await store.append(value);
    }
  }));
  const fillMs = performance.now() - fillStarted;
  await store.close({ snapshot: false });
  const sourceBytes = await dirBytes(dataDir);
  const node = await spawnNode({
    dataDir,
    args: ["--retain-bytes", String(64 * GiB), "--snapshot-every-bytes", "0"],
    readyTimeoutMs: 300_000,
  });
  let backupMs: number;
  let backupBytes: number;
  let backupPath: string;
  try {
    const started = performance.now();
    const summary = await runBackup({ addr: node.addr, toDir: `${root}/backups` });
    backupMs = performance.now() - started;
    backupBytes = summary.bytes;
    backupPath = summary.path;
  } finally {
    await node.kill("SIGKILL"); // no shutdown snapshot: it is not part of what is measured
  }
  const started = performance.now();
  const restored = await runRestore({ from: backupPath, dataDir: `${root}/restored` });
  const restoreMs = performance.now() - started;
  return { sourceBytes, fillMs, backupBytes, backupMs, restoreBytes: restored.bytes, restoreMs };
}

const root = await Deno.makeTempDir({ prefix: "shanghai-bench-ops-" });
try {
  console.error(`bench:ops: writing under ${root}${QUICK ? " (quick)" : ""}`);
  const http = await benchHttp(root);
  const emit = await benchEmit();
  const backup = await benchBackup(root);
  const mb = (bytes: number) => bytes / MiB;
  const off = median(http.rates.off);
  const spread = (xs: number[]) => `${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)}`;
  const row = (what: string, bytes: number, ms: number) =>
    `| ${what} | ${bytes} (${mb(bytes).toFixed(0)} MiB) | ${(ms / 1000).toFixed(2)} | ${
      (mb(bytes) / (ms / 1000)).toFixed(0)
    } |`;
  const lines = [
    `## Operations benchmark (${QUICK ? "quick" : "full"})`,
    "",
    `Machine: ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}, ${Deno.build.os}-${Deno.build.arch}.`,
    "",
    `### Write throughput through HTTP, telemetry on vs off`,
    "",
    `${HTTP_CONCURRENCY} clients, ${HTTP_WRITES} PUTs of 100 bytes per round, median of ${ROUNDS} rounds in rotating order.`,
    "",
    "| telemetry | writes/s (median) | spread of rounds | throughput cost vs off | node CPU µs per write (median) | CPU cost vs off |",
    "|---|---|---|---|---|---|",
    ...MODES.map((mode) => {
      const m = median(http.rates[mode]);
      const c = median(http.cpu[mode]);
      const cOff = median(http.cpu.off);
      const cpuCost = mode === "off" ? "-" : `${(((c - cOff) / cOff) * 100).toFixed(1)}%`;
      return `| ${mode} | ${m.toFixed(0)} | ${spread(http.rates[mode])} | ${
        mode === "off" ? "-" : pct(m, off)
      } | ${c.toFixed(0)} | ${cpuCost} |`;
    }),
    "",
    "Throughput depends on the disk's fsync latency and on other tenants of the machine, so single rounds swing widely; the CPU the node process spends per write (user + system, from /proc) is the steadier measure of what telemetry costs.",
    "",
    `"metrics+traces" also pushes metrics over OTLP/HTTP every second and exports spans for requests and WAL commits (the default sampler keeps 10%; "always_on" keeps every span) to a loopback sink (${http.sinkRequests} OTLP requests received).`,
    "",
    `### CPU spent in telemetry per request`,
    "",
    `The events of one PUT (one http.request.completed, 1/${ENTRIES_PER_BATCH} of a wal.write.completed) emitted ${EMIT_REQUESTS} times, median of 3.`,
    "",
    "| telemetry | µs per request | added µs | added share of the node's CPU per write (median, off) |",
    "|---|---|---|---|",
    ...MODES.map((mode) => {
      const added = emit[mode] - emit.off;
      const share = mode === "off" ? "-" : `${((added / median(http.cpu.off)) * 100).toFixed(1)}%`;
      return `| ${mode} | ${emit[mode].toFixed(2)} | ${
        mode === "off" ? "-" : added.toFixed(2)
      } | ${share} |`;
    }),
    "",
    "### Backup and restore",
    "",
    "| operation | bytes | seconds | MB/s |",
    "|---|---|---|---|",
    row("fill the data directory (WAL appends of 64 KiB)", backup.sourceBytes, backup.fillMs),
    row(
      "online backup of the running node (HTTP, SHA-256, fsync)",
      backup.backupBytes,
      backup.backupMs,
    ),
    row(
      "restore (SHA-256 checked while copying, fsync, rename)",
      backup.restoreBytes,
      backup.restoreMs,
    ),
    "",
    "The files were recently written, so reads come mostly from the page cache; writes are fsynced.",
    "",
    `Reproduce: \`deno task bench:ops${QUICK ? " --quick" : ""}\``,
  ];
  console.log(lines.join("\n"));
} finally {
  await Deno.remove(root, { recursive: true });
}
