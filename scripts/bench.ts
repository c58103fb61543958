/**
 * `deno task bench`: write throughput and latency of 1 KiB entries with fsync'd acks, printed as
 * one markdown table plus the command that reproduces it.
 *
 * - Library: `Wal.append` from mod.ts in this process, 1 writer and 100 concurrent writers, and
 *   100 writers again with `inlineSync` (fdatasync on the JavaScript thread, for bulk loaders).
 * - Disk: the same bytes as a 100-entry batch written and fdatasync'ed in a loop with no
 *   JavaScript between, on a preallocated file as the WAL writes: the ceiling the library rows
 *   run against, measured in the same run.
 * - HTTP: `PUT /v1/kv/{key}` against a real `deno run main.ts serve` on a loopback port, driven by
 *   wrk (Debian's package) in its own process with scripts/wrk_put.lua, at 1, 10 and 50 clients.
 * - Redis 7 with `appendonly yes`, `appendfsync always` in a temp dir, driven by
 *   `redis-benchmark -t set -d 1024 -c N -r KEYS`, at the same client counts in the same run,
 *   interleaved with the HTTP rows so both see the same disk.
 * - Restart: a data dir with `--restart-bytes` of WAL and a snapshot near its end; the time from
 *   spawning `serve` until `GET /ready` answers 200.
 *
 * Every loop is bounded by count and time; child processes and temp dirs are removed on exit,
 * on failure and on SIGINT. `--runs N` repeats everything and prints medians with [min-max].
 *
 * @module
 */
import { parseArgs } from "node:util";
import { appendEntry, limits, Store, Wal } from "../mod.ts";
import { directEntryBytes } from "../src/common/entry.ts";
import { RECORD_HEADER_BYTES } from "../src/common/limits.ts";
import { spawnNode } from "../tests/support/node_process.ts";
import { freePort, median } from "./_bench_load.ts";

const USAGE = `Usage: deno task bench [options]

  --runs N             repeat every measurement N times; cells show median [min-max] (default 1)
  --duration S         seconds per HTTP and Redis row (default 10)
  --lib-duration S     seconds per library row (default 5)
  --restart-bytes N    WAL bytes for the restart row (default 1073741824); 0 skips the row
  --no-redis           skip Redis (no ratios)
  --content-type T     json or bytes: the HTTP body type (default json)
  --keys N             key space for HTTP and Redis writes (default 100000)
  --dir PATH           where temp dirs go (default: the system temp dir)
  --quick              a short run: --duration 2 --lib-duration 1 --restart-bytes 134217728
  -h, --help           show this help`;

const { GiB, MiB } = limits;
const VALUE_BYTES = 1024;
const LIB_ENTRIES_MAX = 5_000_000;
const REDIS_REQUESTS_MAX = 5_000_000;
const READY_TIMEOUT_MS = 120_000;
const PROCESS_GRACE_MS = 30_000;

interface Options {
  runs: number;
  durationS: number;
  libDurationS: number;
  restartBytes: number;
  redis: boolean;
  contentType: "json" | "bytes";
  keys: number;
  dir?: string;
}

/** One measurement: throughput and latency percentiles in milliseconds. */
interface Sample {
  opsPerS: number;
  p50Ms: number;
  p99Ms: number;
}

function parseOptions(args: string[]): Options | undefined {
  const { values } = parseArgs({
    args,
    options: {
      runs: { type: "string" },
      duration: { type: "string" },
      "lib-duration": { type: "string" },
      "restart-bytes": { type: "string" },
      "no-redis": { type: "boolean" },
      "content-type": { type: "string" },
      keys: { type: "string" },
      dir: { type: "string" },
      quick: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return undefined;
  }
  const num = (
    raw: string | undefined,
    name: string,
    fallback: number,
    min: number,
    max: number,
  ) => {
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!Number.isFinite(value) || value < min || value > max) {
      throw new Error(`Invalid --${name} ${JSON.stringify(raw)}: expected ${min} to ${max}`);
    }
    return value;
  };
  const quick = values.quick === true;
  const contentType = values["content-type"] ?? "json";
  if (contentType !== "json" && contentType !== "bytes") {
    throw new Error(
      `Invalid --content-type ${JSON.stringify(contentType)}: expected json or bytes`,
    );
  }
  return {
    runs: Math.round(num(values.runs, "runs", 1, 1, 9)),
    durationS: num(values.duration, "duration", quick ? 2 : 10, 1, 120),
    libDurationS: num(values["lib-duration"], "lib-duration", quick ? 1 : 5, 0.5, 120),
    restartBytes: Math.round(
      num(values["restart-bytes"], "restart-bytes", quick ? 128 * MiB : GiB, 0, 16 * GiB),
    ),
    redis: values["no-redis"] !== true,
    contentType,
    keys: Math.round(num(values.keys, "keys", 100_000, 1, 10_000_000)),
    dir: values.dir,
  };
}

// ---------------------------------------------------------------------------------------------
// Clean-up: every child process and temp dir is registered here and removed on any exit path.

const children = new Set<Deno.ChildProcess>();
const tempDirs = new Set<string>();

async function makeTempDir(options: Options, prefix: string): Promise<string> {
  const dir = await Deno.makeTempDir({ dir: options.dir, prefix: `shanghai-bench-${prefix}-` });
  tempDirs.add(dir);
  return dir;
}

async function removeDir(dir: string): Promise<void> {
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  tempDirs.delete(dir);
}

async function stopChild(child: Deno.ChildProcess, signal: Deno.Signal = "SIGTERM"): Promise<void> {
  try {
    child.kill(signal);
  } catch { /* already exited */ }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* already exited */ }
  }, PROCESS_GRACE_MS);
  try {
    await child.status;
  } finally {
    clearTimeout(timer);
    children.delete(child);
  }
}

async function cleanUp(): Promise<void> {
  await Promise.all([...children].map((child) => stopChild(child, "SIGKILL")));
  await Promise.all([...tempDirs].map(removeDir));
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

async function run(
  cmd: string,
  args: string[],
  options: { env?: Record<string, string>; timeoutMs: number },
) {
  const child = new Deno.Command(cmd, {
    args,
    env: options.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  children.add(child);
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* already exited */ }
  }, options.timeoutMs);
  try {
    const out = await child.output();
    const decoder = new TextDecoder();
    return {
      code: out.code,
      signal: out.signal,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  } finally {
    clearTimeout(timer);
    children.delete(child);
  }
}

async function commandVersion(cmd: string, args: string[]): Promise<string> {
  try {
    const out = await run(cmd, args, { timeoutMs: 10_000 });
    return out.stdout.trim().split("\n")[0];
  } catch {
    return "not installed";
  }
}

async function diskOf(path: string): Promise<string> {
  const out = await run("df", ["-P", "-T", path], { timeoutMs: 10_000 }).catch(() => undefined);
  const line = out?.stdout.trim().split("\n")[1];
  if (!line) return "unknown";
  const [device, type, , , , , mount] = line.split(/\s+/);
  return `${device} (${type}, mounted on ${mount})`;
}

// ---------------------------------------------------------------------------------------------
// Library: Wal.append from mod.ts.

async function libraryRow(
  options: Options,
  writers: number,
  inlineSync = false,
): Promise<Sample> {
  const dir = await makeTempDir(options, "lib");
  const wal = await Wal.open(dir, { inlineSync });
  const value = new Uint8Array(VALUE_BYTES).fill(0x78);
  const latencies = new Float64Array(LIB_ENTRIES_MAX + writers);
  let done = 0;
  let seq = 0;
  try {
    const warmupEnds = performance.now() + 300;
    let measuring = false;
    let started = 0;
    let deadline = Infinity;
    const writer = async () => {
      while (done < LIB_ENTRIES_MAX && performance.now() < deadline) {
        const s = ++seq;
        const t0 = performance.now();
        await wal.append(appendEntry(value, { origin: "bench", seq: s, hlc: s }));
        const t1 = performance.now();
        if (!measuring && t1 >= warmupEnds) {
          // The first writer past the warm-up starts the clock for everyone.
          measuring = true;
          started = t1;
          deadline = t1 + options.libDurationS * 1000;
        } else if (measuring && t0 >= started) {
          latencies[done++] = t1 - t0;
        }
      }
    };
    await Promise.all(Array.from({ length: writers }, writer));
    const elapsedMs = Math.max(1, performance.now() - started);
    const sorted = latencies.subarray(0, done).sort();
    return {
      opsPerS: done / elapsedMs * 1000,
      p50Ms: percentile(sorted, 0.5),
      p99Ms: percentile(sorted, 0.99),
    };
  } finally {
    await wal.close();
    await removeDir(dir);
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP: a real serve process, wrk in its own process.

const WRK_SCRIPT = new URL("./wrk_put.lua", import.meta.url).pathname;

async function wrkRow(
  options: Options,
  port: number,
  clients: number,
  seconds: number,
): Promise<Sample> {
  const out = await run("wrk", [
    "-t1",
    `-c${clients}`,
    `-d${seconds}s`,
    "--timeout",
    "10s",
    "-s",
    WRK_SCRIPT,
    `http://127.0.0.1:${port}`,
  ], {
    env: { BENCH_KEYS: String(options.keys), BENCH_CONTENT_TYPE: options.contentType },
    timeoutMs: (seconds + 30) * 1000,
  });
  const line = out.stdout.split("\n").find((l) => l.startsWith("{"));
  if (out.code !== 0 || !line) {
    throw new Error(`wrk failed (exit ${out.code}): ${out.stderr || out.stdout}`);
  }
  const result = JSON.parse(line) as {
    requests: number;
    durationUs: number;
    p50Us: number;
    p99Us: number;
    errors: Record<string, number>;
  };
  const errors = Object.entries(result.errors).filter(([, n]) => n > 0);
  if (errors.length > 0) {
    throw new Error(
      `wrk saw errors at ${clients} clients: ${
        JSON.stringify(result.errors)
      }; the node did not answer 200`,
    );
  }
  return {
    opsPerS: result.requests / (result.durationUs / 1e6),
    p50Ms: result.p50Us / 1000,
    p99Ms: result.p99Us / 1000,
  };
}

// ---------------------------------------------------------------------------------------------
// Redis 7: appendonly yes, appendfsync always, in a temp dir on the same disk as ours.

interface RedisServer {
  port: number;
  stop(): Promise<void>;
}

async function startRedis(options: Options): Promise<RedisServer> {
  const dir = await makeTempDir(options, "redis");
  const port = freePort();
  const child = new Deno.Command("redis-server", {
    args: [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--dir",
      dir,
      "--appendonly",
      "yes",
      "--appendfsync",
      "always",
      "--save",
      "",
      "--daemonize",
      "no",
      "--logfile",
      `${dir}/redis.log`,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  children.add(child);
  const deadline = performance.now() + 10_000;
  while (true) {
    const out = await run("redis-cli", ["-p", String(port), "ping"], { timeoutMs: 5_000 });
    if (out.stdout.trim() === "PONG") break;
    if (performance.now() > deadline) {
      await stopChild(child, "SIGKILL");
      throw new Error(`Cannot start redis-server on port ${port}: no PONG within 10 s`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const config = await run("redis-cli", ["-p", String(port), "config", "get", "appendfsync"], {
    timeoutMs: 5_000,
  });
  if (!config.stdout.includes("always")) {
    throw new Error(`Redis is not running with appendfsync always: ${config.stdout}`);
  }
  return {
    port,
    async stop() {
      await stopChild(child);
      await removeDir(dir);
    },
  };
}

async function redisBenchmark(
  port: number,
  clients: number,
  requests: number,
  keys: number,
  timeoutMs: number,
) {
  const out = await run("redis-benchmark", [
    "-h",
    "127.0.0.1",
    "-p",
    String(port),
    "-t",
    "set",
    "-d",
    String(VALUE_BYTES),
    "-c",
    String(clients),
    "-n",
    String(requests),
    "-r",
    String(keys),
    "--csv",
  ], { timeoutMs });
  // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  const row = out.stdout.split("\n").find((l) => l.startsWith('"SET"'));
  if (out.code !== 0 || !row) {
    throw new Error(`redis-benchmark failed (exit ${out.code}): ${out.stderr || out.stdout}`);
  }
  const cells = row.split(",").map((c) => Number(c.replaceAll('"', "")));
  return { opsPerS: cells[1], p50Ms: cells[4], p99Ms: cells[6] };
}

async function redisRow(options: Options, port: number, clients: number): Promise<Sample> {
  // A short probe sizes the real run to about --duration seconds (redis-benchmark counts requests).
  const probe = await redisBenchmark(
    port,
    clients,
    Math.max(1000, 200 * clients),
    options.keys,
    60_000,
  );
  const requests = Math.min(
    REDIS_REQUESTS_MAX,
    Math.max(1000, Math.round(probe.opsPerS * options.durationS)),
  );
  return await redisBenchmark(
    port,
    clients,
    requests,
    options.keys,
    (options.durationS * 4 + 30) * 1000,
  );
}

// ---------------------------------------------------------------------------------------------
// Restart: WAL of restartBytes with a snapshot near its end.

const RESTART_KEYS = 10_000;
const RESTART_TAIL_BYTES = 32 * MiB;
const RESTART_BUILD_TIMEOUT_MS = 600_000;

async function buildRestartDir(
  options: Options,
): Promise<{ dir: string; walBytes: number; snapshotBytes: number }> {
  const dir = await makeTempDir(options, "restart");
  const store = await Store.open({
    dataDir: dir,
    nodeId: "bench-restart",
    snapshotEveryBytes: 0,
    retainBytes: 1024 * GiB,
    batchEntriesMax: 1000,
  });
  const value = new Uint8Array(VALUE_BYTES).fill(0x78);
  let seq = 0;
  const deadline = performance.now() + RESTART_BUILD_TIMEOUT_MS;
  const fill = async (untilBytes: number) => {
    const writer = async () => {
      for (let i = 0; i < LIB_ENTRIES_MAX && store.wal.bytesOnDisk < untilBytes; i++) {
        if (performance.now() > deadline) {
          throw new Error(
            `Cannot build the restart data dir within ${RESTART_BUILD_TIMEOUT_MS} ms`,
          );
        }
        await store.put(`k${++seq % RESTART_KEYS}`, value, "application/octet-stream");
      }
    };
    await Promise.all(Array.from({ length: 100 }, writer));
  };
  try {
    await fill(Math.max(options.restartBytes - RESTART_TAIL_BYTES, options.restartBytes / 2));
    await store.snapshot();
    await fill(options.restartBytes);
  } finally {
    await store.close({ snapshot: false });
  }
  let snapshotBytes = 0;
  for await (const item of Deno.readDir(`${dir}/snapshots`)) {
    snapshotBytes = Math.max(
      snapshotBytes,
      (await Deno.stat(`${dir}/snapshots/${item.name}`)).size,
    );
  }
  return { dir, walBytes: store.wal.bytesOnDisk, snapshotBytes };
}

async function restartRow(
  dir: string,
  retainBytes: number,
): Promise<{ readyMs: number; recoveryMs: number }> {
  const port = freePort();
  const started = performance.now();
  const spawning = spawnNode({
    dataDir: dir,
    args: [
      "--admin-port",
      String(port),
      "--node-id",
      "bench-restart",
      "--retain-bytes",
      String(retainBytes),
    ],
    readyTimeoutMs: READY_TIMEOUT_MS,
  });
  let readyMs = NaN;
  const deadline = started + READY_TIMEOUT_MS;
  while (performance.now() < deadline) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/ready`);
      await response.body?.cancel();
      if (response.status === 200) {
        readyMs = performance.now() - started;
        break;
      }
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 5));
  }
  const node = await spawning;
  children.add(node.child);
  // SIGKILL: a clean stop would snapshot and change the directory the next run measures.
  await stopChild(node.child, "SIGKILL");
  if (!Number.isFinite(readyMs)) {
    throw new Error(`The restarted node was not ready within ${READY_TIMEOUT_MS} ms`);
  }
  return { readyMs, recoveryMs: Number(node.readyLine.recoveryMs) };
}

/** Bytes of one library batch: 100 records as `libraryRow` appends them. */
function libraryBatchBytes(): number {
  const entry = appendEntry(new Uint8Array(VALUE_BYTES), { origin: "bench", seq: 1e6 });
  return 100 * (RECORD_HEADER_BYTES + directEntryBytes({ ...entry, lsn: 1e6 }));
}

const DISK_FILE_BYTES = 32 * MiB;

/**
 * The disk's ceiling for the library rows: one batch's bytes written with writeSync and
 * fdatasync'ed on the JavaScript thread, in a loop with nothing between, over a file of
 * fdatasync'ed zeros (the WAL writes over preallocated zeros too). Entries/s = 100 per cycle.
 */
async function diskRow(options: Options): Promise<Sample> {
  const dir = await makeTempDir(options, "disk");
  const file = await Deno.open(`${dir}/ceiling`, { read: true, write: true, createNew: true });
  try {
    const zeros = new Uint8Array(MiB);
    for (let at = 0; at < DISK_FILE_BYTES; at += MiB) await file.write(zeros);
    await file.syncData();
    const batch = new Uint8Array(libraryBatchBytes()).fill(0x78);
    const cycles = new Float64Array(LIB_ENTRIES_MAX / 100);
    let done = 0;
    let offset = DISK_FILE_BYTES;
    const started = performance.now();
    const deadline = started + options.libDurationS * 1000;
    while (done < cycles.length && performance.now() < deadline) {
      if (offset + batch.length > DISK_FILE_BYTES) {
        offset = 0;
        await file.seek(0, Deno.SeekMode.Start);
      }
      const t0 = performance.now();
      for (let at = 0; at < batch.length;) at += file.writeSync(batch.subarray(at));
      file.syncDataSync();
      cycles[done++] = performance.now() - t0;
      offset += batch.length;
    }
    const elapsedMs = Math.max(1, performance.now() - started);
    const sorted = cycles.subarray(0, done).sort();
    return {
      opsPerS: done * 100 / elapsedMs * 1000,
      p50Ms: percentile(sorted, 0.5),
      p99Ms: percentile(sorted, 0.99),
    };
  } finally {
    file.close();
    await removeDir(dir);
  }
}

// ---------------------------------------------------------------------------------------------
// The run and the table.

const CLIENTS = [1, 10, 50] as const;

interface RunResult {
  lib1: Sample;
  lib100: Sample;
  lib100Inline: Sample;
  disk: Sample;
  http: Sample[];
  redis: (Sample | undefined)[];
  restart?: { readyMs: number; recoveryMs: number };
}

const loadSamples: number[] = [];

/** The 1-minute load average: other processes on the machine share its cores and disk. */
async function sampleLoad(): Promise<void> {
  const text = await Deno.readTextFile("/proc/loadavg").catch(() => "");
  const load = Number(text.split(" ")[0]);
  if (Number.isFinite(load) && text !== "") loadSamples.push(load);
}

/** Flushes every dirty page on the machine, so one row's writeback does not slow the next. */
async function settleDisk(): Promise<void> {
  await run("sync", [], { timeoutMs: 120_000 });
  await sampleLoad();
}

async function oneRun(options: Options, index: number): Promise<RunResult> {
  const log = (msg: string) => console.error(`[run ${index + 1}/${options.runs}] ${msg}`);
  log("library, 1 writer");
  await settleDisk();
  const lib1 = await libraryRow(options, 1);
  log("library, 100 writers");
  await settleDisk();
  const lib100 = await libraryRow(options, 100);
  log("library, 100 writers, inlineSync");
  await settleDisk();
  const lib100Inline = await libraryRow(options, 100, true);
  log("disk ceiling: batch write + fdatasync loop");
  await settleDisk();
  const disk = await diskRow(options);
  const dataDir = await makeTempDir(options, "http");
  const node = await spawnNode({ dataDir });
  children.add(node.child);
  const redis = options.redis ? await startRedis(options) : undefined;
  const http: Sample[] = [];
  const redisSamples: (Sample | undefined)[] = [];
  try {
    log("HTTP warm-up");
    await wrkRow(options, node.httpPort, 10, Math.min(2, options.durationS));
    for (const clients of CLIENTS) {
      if (redis) {
        log(`Redis, ${clients} clients`);
        await settleDisk();
        redisSamples.push(await redisRow(options, redis.port, clients));
      } else redisSamples.push(undefined);
      log(`HTTP PUT, ${clients} clients`);
      await settleDisk();
      http.push(await wrkRow(options, node.httpPort, clients, options.durationS));
    }
  } finally {
    await redis?.stop();
    await stopChild(node.child);
    await removeDir(dataDir);
  }
  return { lib1, lib100, lib100Inline, disk, http, redis: redisSamples };
}

function fmt(value: number, digits: number): string {
  return value.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

/** The median, with [min-max] when there is more than one run. */
function cell(values: number[], digits: number): string {
  if (values.length === 0 || values.some((v) => !Number.isFinite(v))) return "-";
  const m = fmt(median(values), digits);
  if (values.length === 1) return m;
  return `${m} [${fmt(Math.min(...values), digits)}-${fmt(Math.max(...values), digits)}]`;
}

function table(
  options: Options,
  runs: RunResult[],
  restartInfo?: { walBytes: number; snapshotBytes: number },
): string {
  const rows: string[] = [
    "| Workload | Clients | ops/s | p50 ms | p99 ms | Shanghai/Redis | Target | Met |",
    "|---|---:|---:|---:|---:|---:|---|---|",
  ];
  const samples = (pick: (r: RunResult) => Sample | undefined) =>
    runs.map(pick).filter((s): s is Sample => s !== undefined);
  const row = (
    name: string,
    clients: number | string,
    s: Sample[],
    ratio: number[],
    target: string,
    met: string,
  ) =>
    rows.push(
      `| ${name} | ${clients} | ${cell(s.map((x) => x.opsPerS), 0)} | ${
        cell(s.map((x) => x.p50Ms), 2)
      } | ${cell(s.map((x) => x.p99Ms), 2)} | ${
        ratio.length > 0 ? cell(ratio, 2) : "-"
      } | ${target} | ${met} |`,
    );
  const yes = (ok: boolean) => ok ? "yes" : "**no**";
  const lib1 = samples((r) => r.lib1);
  row("Library `Wal.append`", 1, lib1, [], "-", "-");
  for (
    const [name, pick] of [
      ["Library `Wal.append`", (r: RunResult) => r.lib100],
      ["Library `Wal.append`, `inlineSync`", (r: RunResult) => r.lib100Inline],
    ] as const
  ) {
    const lib100 = samples(pick);
    row(
      name,
      100,
      lib100,
      [],
      ">= 150,000 ops/s",
      yes(median(lib100.map((s) => s.opsPerS)) >= 150_000),
    );
  }
  row(
    "Disk ceiling: 100 records' bytes, write + fdatasync loop (p50/p99 per cycle)",
    "-",
    samples((r) => r.disk),
    [],
    "-",
    "-",
  );
  CLIENTS.forEach((clients, i) => {
    const redis = samples((r) => r.redis[i]);
    if (redis.length > 0) row("Redis 7 SET, appendfsync always", clients, redis, [], "-", "-");
  });
  CLIENTS.forEach((clients, i) => {
    const http = samples((r) => r.http[i]);
    const ratio = runs.filter((r) => r.redis[i]).map((r) =>
      r.http[i].opsPerS / r.redis[i]!.opsPerS
    );
    const wantRatio = clients === 1 ? 0.8 : 1.0;
    const targets = [`ratio >= ${wantRatio.toFixed(1)}`];
    let met = ratio.length > 0 ? median(ratio) >= wantRatio : undefined;
    if (clients === 10) {
      targets.push("p99 < 5 ms");
      const p99ok = median(http.map((s) => s.p99Ms)) < 5;
      met = met === undefined ? p99ok : met && p99ok;
    }
    row(
      `HTTP \`PUT /v1/kv\` (${options.contentType})`,
      clients,
      http,
      ratio,
      targets.join(", "),
      met === undefined ? "-" : yes(met),
    );
  });
  const restarts = runs.map((r) => r.restart).filter((r) => r !== undefined);
  if (restarts.length > 0 && restartInfo) {
    const ready = restarts.map((r) => r.readyMs);
    rows.push(
      `| Restart: ${fmt(restartInfo.walBytes / MiB, 0)} MiB WAL + ${
        fmt(restartInfo.snapshotBytes / MiB, 1)
      } MiB snapshot, spawn to \`/ready\` 200 | - | - | ${cell(ready, 0)} (node's recovery: ${
        cell(restarts.map((r) => r.recoveryMs), 0)
      }) | - | - | < 2,000 ms | ${yes(median(ready) < 2000)} |`,
    );
  }
  return rows.join("\n");
}

async function main(): Promise<number> {
  const options = parseOptions(Deno.args);
  if (!options) return 0;
  const onSignal = () => {
    console.error("Interrupted: stopping child processes and removing temp dirs");
    cleanUp().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  try {
    const probeDir = await makeTempDir(options, "probe");
    const disk = await diskOf(probeDir);
    await removeDir(probeDir);
    const runs: RunResult[] = [];
    for (let i = 0; i < options.runs; i++) runs.push(await oneRun(options, i));
    // The restart rows come last: building 1 GiB leaves writeback that would slow the others.
    let restartInfo: { walBytes: number; snapshotBytes: number } | undefined;
    if (options.restartBytes > 0) {
      console.error(
        `Building the restart data dir: ${fmt(options.restartBytes / MiB, 0)} MiB of WAL`,
      );
      const built = await buildRestartDir(options);
      restartInfo = built;
      await settleDisk();
      for (let i = 0; i < options.runs; i++) {
        console.error(`[restart ${i + 1}/${options.runs}]`);
        runs[i].restart = await restartRow(built.dir, 2 * options.restartBytes);
      }
      await removeDir(built.dir);
    }
    const [redisVersion, wrkVersion] = await Promise.all([
      options.redis ? commandVersion("redis-server", ["--version"]) : Promise.resolve("skipped"),
      commandVersion("wrk", ["--version"]).then((v) => v || "wrk"),
    ]);
    console.log(table(options, runs, restartInfo));
    console.log("");
    console.log(`Command: deno task bench ${Deno.args.join(" ")}`.trimEnd());
    console.log(
      `Runs: ${options.runs} (cells: median [min-max]); ${options.durationS} s per HTTP/Redis row, ${options.libDurationS} s per library row; ` +
        `1 KiB values, every ack after fdatasync; keys cycle over ${options.keys}.`,
    );
    console.log(
      `HTTP client: ${
        wrkVersion.split(" [")[0]
      } in its own process, 1 thread, keep-alive, scripts/wrk_put.lua; ` +
        `server: deno run main.ts serve (Deno ${Deno.version.deno}). Redis: ${
          redisVersion.split(" sha=")[0]
        }, ` +
        `redis-benchmark -t set -d 1024 -r ${options.keys}.`,
    );
    console.log(`Data dirs on ${disk}; ${navigator.hardwareConcurrency} cores.`);
    if (loadSamples.length > 0) {
      const [low, high] = [Math.min(...loadSamples), Math.max(...loadSamples)];
      const busy = high > navigator.hardwareConcurrency
        ? `; above ${navigator.hardwareConcurrency}, other processes competed for the cores and the disk`
        : "";
      console.log(
        `1-minute load average at the start of each row: ${fmt(low, 1)}-${fmt(high, 1)}${busy}.`,
      );
    }
    return 0;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    await cleanUp();
  }
}

Deno.exit(await main());
