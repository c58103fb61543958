/**
 * Test helper for wal_test.ts and store_test.ts, run as its own process by
 * {@link runWithFileBytesMax}: under a file size limit (`ulimit -f`, with SIGXFSZ ignored) a
 * write that would grow a file past the limit fails with EFBIG, the way a full disk fails it
 * with ENOSPC. The WAL's zero writer, which runs `preallocateBytes` ahead of the records, meets
 * the limit first; the records stay below it. A real failure of the zero write, not a mock.
 *
 * `wal` mode appends through a Wal and prints `{ lastLsn, failures }` as JSON on stdout.
 * `records` mode appends through a Wal without preallocation, so a batch's own write meets the
 * limit, and prints `{ acked, errors, after }`: the seqs whose appends resolved, the rejections,
 * and what one more append got once the WAL had failed.
 * `store` mode puts keys through a Store whose JSON log lines go to stderr, and prints
 * `{ lastLsn, events }` on stdout.
 *
 * @module
 */
import { withFileBytesMax } from "../common/_file_bytes_limit.ts";
import { EventBus } from "../telemetry/events.ts";
import { createLogger } from "../telemetry/log.ts";
import { Store } from "./kv/store.ts";
import { appendEntry, type EntryInput, Wal } from "./wal/wal.ts";

/** Zeros laid ahead of the records: the fourth top-up crosses a 256 KiB limit. */
export const PREALLOCATE_BYTES = 64 * 1024;
/** Appends stop once the records reach this many bytes, below a 256 KiB limit. */
export const RECORD_BYTES_TARGET = 224 * 1024;
const ENTRY_BYTES = 1000;
const CONCURRENT_APPENDS = 8;

/** Runs this file in a child process whose files cannot grow past `fileBytesMax`. */
export async function runWithFileBytesMax(
  fileBytesMax: number,
  options: { mode: "wal" | "store" | "records"; dir: string },
): Promise<{ stdout: string; stderr: string }> {
  const child = new URL(import.meta.url).pathname;
  const limited = withFileBytesMax(fileBytesMax, Deno.execPath(), [
    "run",
    "--allow-all",
    child,
    options.mode,
    options.dir,
  ]);
  const out = await new Deno.Command(limited.command, {
    args: limited.args,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  if (!out.success) {
    throw new Error(`Child exited with code ${out.code}:\n${stdout}\n${stderr}`);
  }
  return { stdout, stderr };
}

/** Appends in rounds of a few concurrent writers until the records reach the target. */
async function appendUntilTarget(
  append: (seq: number) => Promise<unknown>,
  recordBytes: () => number,
): Promise<void> {
  let seq = 0;
  while (recordBytes() < RECORD_BYTES_TARGET) {
    await Promise.all(Array.from({ length: CONCURRENT_APPENDS }, () => append(++seq)));
  }
}

function appendInput(seq: number): EntryInput {
  const value = new Uint8Array(ENTRY_BYTES);
  new DataView(value.buffer).setUint32(0, seq, true);
  return appendEntry(value, { origin: "test", seq });
}

async function runWal(dir: string): Promise<void> {
  const failures: string[] = [];
  const wal = await Wal.open(dir, {
    preallocateBytes: PREALLOCATE_BYTES,
    onPreallocateFailed: (error) => failures.push(String(error)),
  });
  await appendUntilTarget(
    (seq) => wal.append(appendInput(seq)),
    () => wal.bytesOnDisk,
  );
  await wal.close();
  console.log(JSON.stringify({ lastLsn: wal.lastLsn, failures }));
}

/** Appends until a batch's write fails; at most this many, so a broken limit cannot loop. */
const RECORDS_APPENDS_MAX = 10_000;

async function runRecords(dir: string): Promise<void> {
  const wal = await Wal.open(dir, { preallocateBytes: 0 });
  const acked: number[] = [];
  const errors: string[] = [];
  let seq = 0;
  while (errors.length === 0 && seq < RECORDS_APPENDS_MAX) {
    await Promise.all(Array.from({ length: CONCURRENT_APPENDS }, async () => {
      const mine = ++seq;
      try {
        await wal.append(appendInput(mine));
        acked.push(mine);
      } catch (error) {
        errors.push((error as Error).message);
      }
    }));
  }
  let after = "";
  try {
    await wal.append(appendInput(++seq));
  } catch (error) {
    after = (error as Error).message;
  }
  await wal.close().catch(() => {});
  console.log(JSON.stringify({ acked, errors, after }));
}

async function runStore(dataDir: string): Promise<void> {
  const events = new EventBus();
  const seen: unknown[] = [];
  events.on("wal.preallocate.failed", (event) => seen.push(event));
  const store = await Store.open({
    dataDir,
    nodeId: "n1",
    preallocateBytes: PREALLOCATE_BYTES,
    snapshotEveryBytes: 0,
    events,
    logger: createLogger({ format: "json" }),
  });
  const value = new Uint8Array(ENTRY_BYTES);
  await appendUntilTarget(
    (seq) => store.put(`key-${seq}`, value, "application/octet-stream"),
    () => store.wal.bytesOnDisk,
  );
  const lastLsn = store.lastLsn;
  await store.close({ snapshot: false });
  console.log(JSON.stringify({ lastLsn, events: seen }));
}

if (import.meta.main) {
  const [mode, dir] = Deno.args;
  if (mode === "wal") await runWal(dir);
  else if (mode === "store") await runStore(dir);
  else if (mode === "records") await runRecords(dir);
  else throw new TypeError(`Unknown mode "${mode}": expected wal, store or records`);
}
