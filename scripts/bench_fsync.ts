/**
 * `deno task bench:fsync`: what preallocating the WAL's active segment buys on this disk.
 *
 * One writer appends 1 KiB and fdatasyncs, as a lone WAL writer does, in two modes alternated
 * round by round so both see the same disk:
 * - `append`: the file grows with every write, so each fdatasync also journals a size change;
 * - `preallocated`: a second handle keeps zeros (written and fdatasync'ed) up to 1 MiB ahead of
 *   the writer, as src/storage/wal/wal.ts does, so each fdatasync flushes data only.
 *
 * Every loop is bounded by time and count; the temp file is removed on exit.
 *
 * @module
 */
import { parseArgs } from "node:util";

const USAGE = `Usage: deno task bench:fsync [--rounds N] [--seconds S] [--dir PATH]

  --rounds N    append/preallocated pairs to run (default 4)
  --seconds S   seconds per mode per round (default 2.5)
  --dir PATH    where the temp file goes (default: the current directory, i.e. the data disk)`;

const RECORD_BYTES = 1024;
const PREALLOCATE_BYTES = 1024 * 1024;
const SYNCS_MAX = 1_000_000;

interface Result {
  syncsPerS: number;
  p50Ms: number;
  p99Ms: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let at = 0;
  while (at < bytes.length) at += await file.write(bytes.subarray(at));
}

async function run(path: string, preallocated: boolean, ms: number): Promise<Result> {
  await Deno.remove(path).catch(() => {});
  const file = await Deno.open(path, { create: true, write: true });
  const zeroFile = await Deno.open(path, { write: true });
  const record = new Uint8Array(RECORD_BYTES).fill(7);
  let position = 0;
  let zeroedEnd = 0;
  let zeroing: Promise<void> | undefined;
  const extend = () => {
    const from = zeroedEnd;
    zeroing = (async () => {
      await zeroFile.seek(from, Deno.SeekMode.Start);
      await writeAll(zeroFile, new Uint8Array(PREALLOCATE_BYTES));
      await zeroFile.syncData();
      zeroedEnd = from + PREALLOCATE_BYTES;
    })().finally(() => zeroing = undefined);
  };
  if (preallocated) {
    extend();
    await zeroing;
  }
  const latencies: number[] = [];
  const started = performance.now();
  try {
    while (performance.now() - started < ms && latencies.length < SYNCS_MAX) {
      if (preallocated && !zeroing && zeroedEnd - position < PREALLOCATE_BYTES / 2) extend();
      if (zeroing && position + RECORD_BYTES > zeroedEnd) await zeroing;
      const t0 = performance.now();
      file.writeSync(record);
      position += RECORD_BYTES;
      await file.syncData();
      latencies.push(performance.now() - t0);
    }
    if (zeroing) await zeroing;
  } finally {
    file.close();
    zeroFile.close();
    await Deno.remove(path).catch(() => {});
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
  const path = `${dir}/.bench-fsync-${crypto.randomUUID().slice(0, 8)}.bin`;
  console.log("| Round | Mode | fdatasyncs/s | p50 ms | p99 ms | preallocated / append |");
  console.log("|---:|---|---:|---:|---:|---:|");
  const ratios: number[] = [];
  for (let round = 1; round <= rounds; round++) {
    const append = await run(path, false, seconds * 1000);
    const pre = await run(path, true, seconds * 1000);
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
