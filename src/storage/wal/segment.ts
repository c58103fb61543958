/**
 * Segment header (64 bytes, little-endian):
 *
 * | bytes | field |
 * |---|---|
 * | 0-5   | magic 0x5348414E4741 ("SHANGA") |
 * | 6-7   | format version (1) |
 * | 8-23  | segment UUID (16 random bytes) |
 * | 24-31 | creation time, Unix ms (uint64) |
 * | 32-39 | first LSN in this segment (uint64) |
 * | 40-59 | reserved, zero |
 * | 60-63 | CRC-32 of bytes 0-59 |
 *
 * File names are the first LSN as 20 zero-padded digits plus ".wal", so names sort by LSN.
 *
 * @module
 */
import { crc32 } from "../../common/crc32.ts";
import { SEGMENT_HEADER_BYTES } from "../../common/limits.ts";

export const SEGMENT_MAGIC = new Uint8Array([0x53, 0x48, 0x41, 0x4e, 0x47, 0x41]);
export const SEGMENT_FORMAT_VERSION = 1;

export interface SegmentHeader {
  version: number;
  uuid: string;
  createdMs: number;
  firstLsn: number;
}

export function segmentFileName(firstLsn: number): string {
  return `${String(firstLsn).padStart(20, "0")}.wal`;
}

/** The first LSN a segment file name claims, or undefined for a name that is not a segment. */
export function parseSegmentFileName(name: string): number | undefined {
  const match = /^(\d{20})\.wal$/.exec(name);
  return match ? Number(match[1]) : undefined;
}

export function encodeSegmentHeader(header: SegmentHeader): Uint8Array {
  const out = new Uint8Array(SEGMENT_HEADER_BYTES);
  const view = new DataView(out.buffer);
  out.set(SEGMENT_MAGIC, 0);
  view.setUint16(6, header.version, true);
  const uuid = header.uuid.replaceAll("-", "");
  for (let i = 0; i < 16; i++) out[8 + i] = parseInt(uuid.slice(i * 2, i * 2 + 2), 16);
  view.setBigUint64(24, BigInt(header.createdMs), true);
  view.setBigUint64(32, BigInt(header.firstLsn), true);
  view.setUint32(60, crc32(out.subarray(0, 60)), true);
  return out;
}

export type HeaderRead = { ok: true; header: SegmentHeader } | { ok: false; problem: string };

export function decodeSegmentHeader(bytes: Uint8Array): HeaderRead {
  if (bytes.length < SEGMENT_HEADER_BYTES) return { ok: false, problem: "header is truncated" };
  for (let i = 0; i < SEGMENT_MAGIC.length; i++) {
    if (bytes[i] !== SEGMENT_MAGIC[i]) return { ok: false, problem: "bad magic number" };
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, SEGMENT_HEADER_BYTES);
  if (crc32(bytes.subarray(0, 60)) !== view.getUint32(60, true)) {
    return { ok: false, problem: "header checksum mismatch" };
  }
  const version = view.getUint16(6, true);
  if (version !== SEGMENT_FORMAT_VERSION) {
    return { ok: false, problem: `unsupported segment format version ${version}` };
  }
  const hex = Array.from(bytes.subarray(8, 24), (b) => b.toString(16).padStart(2, "0")).join("");
  const uuid = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
    hex.slice(20)
  }`;
  return {
    ok: true,
    header: {
      version,
      uuid,
      createdMs: Number(view.getBigUint64(24, true)),
      firstLsn: Number(view.getBigUint64(32, true)),
    },
  };
}
