/**
 * `deno task bench:fsync`: what preallocating the WAL's active segment buys on this disk.
 *
 * One writer appends 1 KiB entries through `Wal.append` (each resolves after its own fdatasync,
 * as a lone client's writes do) with `preallocateBytes: 0` (the segment grows with every write,
 * so each fdatasync also journals a size change) and with the default preallocation (zeros
 * kept ahead of the writer, so each fdatasync flushes data only), alternated round by round so
 * both see the same disk.
 *
 * Every loop is bounded by time and count; the temp dirs are removed on exit.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { appendEntry, limits, Wal } from "../mod.ts";
import { percentile } from "./_bench_load.ts";

const USAGE = `Usage: deno task bench:fsync [--rounds N] [--seconds S] [--dir PATH]

  --rounds N    append/preallocated pairs to run (default 4)
  --seconds S   seconds per mode per round (default 2.5)
  --dir PATH    where the temp dirs go (default: the current directory, i.e. the data disk)`;

const VALUE_BYTES = 1024;
const APPENDS_MAX = 1_000_000;

interface Result {
  syncsPerS: number;
  p50Ms: number;
  p99Ms: number;
}

async function run(parent: string, preallocateBytes: number, ms: number): Promise<Result> {
  const dir = await Deno.makeTempDir({ dir: parent, prefix: ".bench-fsync-" });
  const wal = await Wal.open(dir, { preallocateBytes });
  const value = new Uint8Array(VALUE_BYTES).fill(7);
  const latencies: number[] = [];
  const started = performance.now();
  try {
    while (performance.now() - started < ms && latencies.length < APPENDS_MAX) {
      const t0 = performance.now();
      await wal.append(appendEntry(value, { origin: "bench", seq: latencies.length + 1, hlc: 0 }));
      latencies.push(performance.now() - t0);
    }
  } finally {
    await wal.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  const elapsedS = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    syncsPerS: latencies.length / elapsedS,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: "string" },
      seconds: { type: "string" },
      dir: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const rounds = Number(values.rounds ?? 4);
  const seconds = Number(values.seconds ?? 2.5);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 50) {
    throw new Error("--rounds must be an integer from 1 to 50");
  }
  if (!(seconds > 0 && seconds <= 60)) throw new Error("--seconds must be in (0, 60]");
  const dir = values.dir ?? ".";
  console.log("| Round | Mode | fdatasyncs/s | p50 ms | p99 ms | preallocated / append |");
  console.log("|---:|---|---:|---:|---:|---:|");
  const ratios: number[] = [];
  for (let round = 1; round <= rounds; round++) {
    const append = await run(dir, 0, seconds * 1000);
    const pre = await run(dir, limits.WAL_PREALLOCATE_BYTES_DEFAULT, seconds * 1000);
    const ratio = pre.syncsPerS / append.syncsPerS;
    ratios.push(ratio);
    for (const [mode, r] of [["append", append], ["preallocated", pre]] as const) {
      console.log(
        `| ${round} | ${mode} | ${Math.round(r.syncsPerS)} | ${r.p50Ms.toFixed(3)} | ${
          r.p99Ms.toFixed(3)
        } | ${mode === "append" ? "" : ratio.toFixed(2)} |`,
      );
    }
  }
  ratios.sort((a, b) => a - b);
  console.log(
    `\nMedian preallocated/append: ${ratios[ratios.length >> 1].toFixed(2)} (range ${
      ratios[0].toFixed(2)
    }-${ratios[ratios.length - 1].toFixed(2)})`,
  );
  console.log(
    `Command: deno task bench:fsync --rounds ${rounds} --seconds ${seconds} --dir ${dir}`,
  );
}

if (import.meta.main) {
  await main();
}
