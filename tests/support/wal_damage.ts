/**
 * Damage done to a WAL on disk, as faults leave it, for tests of what recovery makes of it.
 *
 * @module
 */
import assert from "node:assert/strict";
import { readRecord } from "../../src/storage/wal/record.ts";
import { parseSegmentFileName } from "../../src/storage/wal/segment.ts";
import { RECORD_BYTES_MAX, SEGMENT_HEADER_BYTES } from "../../src/common/limits.ts";

/**
 * Zeroes the last `count` records of the newest WAL segment in `walDir`, as a disk whose write
 * cache never flushed them leaves the file (its preallocated zeros follow). Returns how many
 * records the segment keeps.
 */
export async function loseWalTail(walDir: string, count: number): Promise<number> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(walDir)) {
    if (entry.isFile && parseSegmentFileName(entry.name) !== undefined) names.push(entry.name);
  }
  assert.ok(names.length > 0, `no WAL segment in ${walDir}`);
  const path = `${walDir}/${names.sort().at(-1)}`;
  const bytes = await Deno.readFile(path);
  const starts: number[] = [];
  let end = SEGMENT_HEADER_BYTES;
  for (let read; (read = readRecord(bytes, end, RECORD_BYTES_MAX)).ok; end = read.next) {
    starts.push(end);
  }
  assert.ok(starts.length > count, `the segment holds ${starts.length} records`);
  const cut = starts[starts.length - count];
  const file = await Deno.open(path, { write: true });
  try {
    await file.seek(cut, Deno.SeekMode.Start);
    await file.write(new Uint8Array(end - cut));
    await file.syncData();
  } finally {
    file.close();
  }
  return starts.length - count;
}
