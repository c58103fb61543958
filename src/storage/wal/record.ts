/**
 * Record framing, shared by WAL segments, snapshots and backups:
 * `length uint32 LE | CRC-32 uint32 LE of data | data`.
 *
 * @module
 */
import { crc32 } from "../../common/crc32.ts";
import { RECORD_HEADER_BYTES } from "../../common/limits.ts";

/** Frames `data` as one record. */
export function frameRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(RECORD_HEADER_BYTES + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length, true);
  view.setUint32(4, crc32(data), true);
  out.set(data, RECORD_HEADER_BYTES);
  return out;
}

/** Why a record at some offset could not be read. */
export type RecordProblem =
  | "truncated header"
  | "bad length"
  | "truncated data"
  | "checksum mismatch";

export type RecordRead =
  | { ok: true; data: Uint8Array; next: number }
  | { ok: false; problem: RecordProblem };

/**
 * Reads the record at `offset` of `bytes`, checking length and CRC before returning data.
 * `data` is a view into `bytes`, not a copy.
 */
export function readRecord(bytes: Uint8Array, offset: number, recordBytesMax: number): RecordRead {
  if (offset + RECORD_HEADER_BYTES > bytes.length) {
    return { ok: false, problem: "truncated header" };
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, RECORD_HEADER_BYTES);
  const length = view.getUint32(0, true);
  if (length === 0 || length > recordBytesMax) return { ok: false, problem: "bad length" };
  const start = offset + RECORD_HEADER_BYTES;
  if (start + length > bytes.length) return { ok: false, problem: "truncated data" };
  const data = bytes.subarray(start, start + length);
  if (crc32(data) !== view.getUint32(4, true)) return { ok: false, problem: "checksum mismatch" };
  return { ok: true, data, next: start + length };
}
