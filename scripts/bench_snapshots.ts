/**
 * `deno task bench:snapshots`: what automatic snapshots cost a large data set.
 *
 * A snapshot rewrites the whole key-value state. This fills a store (through the library, 100
 * writers, `inlineSync` as `serve` runs it) with `--keys` keys of 1 KiB, then overwrites random
 * keys for `--seconds` and reports the writes per second, their latency, and what snapshots
 * wrote meanwhile, with `--snapshot-wal-percent` 0 (a snapshot every 256 MiB of WAL, whatever
 * the state's size) and the default 100 (the WAL since the last snapshot must also reach that
 * snapshot's size), alternated round by round so both see the same disk.
 *
 * Bounded: the fill stops at `--keys`, the overwrites at `--seconds`; temp dirs are removed.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { GiB, SNAPSHOT_WAL_PERCENT_DEFAULT } from "../src/common/limits.ts";
import { Store } from "../src/storage/kv/store.ts";
import { EventBus } from "../src/telemetry/events.ts";
import { percentile } from "./_bench_load.ts";

const USAGE = `Usage: deno task bench:snapshots [--keys N] [--seconds S] [--rounds N] [--dir PATH]

  --keys N      keys of 1 KiB in the data set (default 1000000: about 1 GiB)
  --seconds S   seconds of overwrites per setting per round (default 30)
  --rounds N    rounds, each running both settings (default 2)
  --dir PATH    where the temp dirs go (default: the current directory, i.e. the data disk)`;

const { values } = parseArgs({
  args: Deno.args,
  options: {
    keys: { type: "string", default: "1000000" },
    seconds: { type: "string", default: "30" },
    rounds: { type: "string", default: "2" },
    dir: { type: "string", default: "." },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  console.log(USAGE);
  Deno.exit(0);
}
const KEYS = Number(values.keys);
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
if (![KEYS, SECONDS, ROUNDS].every((n) => Number.isSafeInteger(n) && n > 0)) {
  console.error(USAGE);
  Deno.exit(2);
}
const WRITERS = 100;
const VALUE = new Uint8Array(1024).fill(0x61);
const CONTENT_TYPE = "application/octet-stream";

interface Result {
  writesPerS: number;
  p50Ms: number;
  p99Ms: number;
  walBytes: number;
  snapshots: number;
  snapshotBytes: number;
  snapshotS: number;
}

async function run(snapshotWalPercent: number): Promise<Result> {
  const dataDir = await Deno.makeTempDir({ dir: values.dir, prefix: "bench-snapshots-" });
  const events = new EventBus();
  let seen = { snapshots: 0, snapshotBytes: 0, snapshotMs: 0, walBytes: 0 };
  events.on("snapshot.completed", (e: { bytes: number; durationMs: number }) => {
    seen.snapshots++;
    seen.snapshotBytes += e.bytes;
    seen.snapshotMs += e.durationMs;
  });
  events.on("wal.write.completed", (e: { bytes: number }) => seen.walBytes += e.bytes);
  const store = await Store.open({
    dataDir,
    nodeId: "bench",
    inlineSync: true,
    snapshotWalPercent,
    events,
  });
  try {
    let next = 0;
    const fill = async () => {
      while (next < KEYS) await store.put(`key-${next++}`, VALUE, CONTENT_TYPE);
    };
    await Promise.all(Array.from({ length: WRITERS }, fill));
    // A snapshot the fill began still counts below: it is part of what the setting costs.
    seen = { snapshots: 0, snapshotBytes: 0, snapshotMs: 0, walBytes: 0 };
    const latencies: number[] = [];
    let seed = 1;
    const started = performance.now();
    const deadline = started + SECONDS * 1000;
    const overwrite = async () => {
      while (performance.now() < deadline) {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        const t0 = performance.now();
        await store.put(`key-${seed % KEYS}`, VALUE, CONTENT_TYPE);
        latencies.push(performance.now() - t0);
      }
    };
    await Promise.all(Array.from({ length: WRITERS }, overwrite));
    const elapsedS = (performance.now() - started) / 1000;
    latencies.sort((a, b) => a - b);
    return {
      writesPerS: latencies.length / elapsedS,
      p50Ms: percentile(latencies, 0.5),
      p99Ms: percentile(latencies, 0.99),
      walBytes: seen.walBytes,
      snapshots: seen.snapshots,
      snapshotBytes: seen.snapshotBytes,
      snapshotS: seen.snapshotMs / 1000,
    };
  } finally {
    await store.close({ snapshot: false });
    await Deno.remove(dataDir, { recursive: true });
  }
}

const fmt = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

console.log(
  `## Snapshots on a large data set (${fmt(KEYS)} keys of 1 KiB, ${WRITERS} writers ` +
    `overwriting for ${SECONDS} s)\n`,
);
console.log(
  "| round | --snapshot-wal-percent | writes/s | p50 ms | p99 ms | WAL GiB | snapshots | " +
    "snapshot GiB | snapshot bytes per WAL byte | s spent in snapshots |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
for (let round = 1; round <= ROUNDS; round++) {
  for (const percent of [0, SNAPSHOT_WAL_PERCENT_DEFAULT]) {
    const r = await run(percent);
    console.log(
      `| ${round} | ${percent} | ${fmt(r.writesPerS)} | ${fmt(r.p50Ms, 2)} | ${fmt(r.p99Ms, 2)} | ${
        fmt(r.walBytes / GiB, 2)
      } | ${r.snapshots} | ${fmt(r.snapshotBytes / GiB, 2)} | ${
        fmt(r.walBytes > 0 ? r.snapshotBytes / r.walBytes : 0, 2)
      } | ${fmt(r.snapshotS, 1)} |`,
    );
  }
}
console.log(
  `\nReproduce: deno task bench:snapshots --keys ${KEYS} --seconds ${SECONDS} --rounds ${ROUNDS}`,
);
