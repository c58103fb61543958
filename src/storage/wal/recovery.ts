/**
 * Pure recovery of one segment's bytes: find where valid data ends and decide whether the
 * damage found there is a torn tail (repair by truncation) or corruption (refuse to start).
 *
 * Decision table, one row per case, in the order the code checks them:
 *
 * | header   | first bad record                           | segment   | action                  |
 * |----------|--------------------------------------------|-----------|-------------------------|
 * | invalid  | -                                          | last, no records could have been acked (file shorter than a header, or header all zero) | torn creation: drop the file |
 * | invalid  | -                                          | any other | refuse: CorruptionError |
 * | valid    | none                                       | any       | accept                  |
 * | valid    | a zero record header with only zeros after it (preallocated space) | any | accept, data ends there |
 * | valid    | a valid record starts more than the torn window after it | any | refuse: mid-log damage |
 * | valid    | otherwise                                  | last      | torn tail: truncate     |
 * | valid    | otherwise                                  | not last  | refuse: CorruptionError |
 *
 * The torn window is the largest batch the writer may have had in flight: a crash can leave a
 * partial, unsynced batch of that size with pages written out of order, and none of it was
 * acknowledged. Valid data further on means bytes that were once durable are now damaged.
 *
 * @module
 */
import { CorruptionError } from "../../common/errors.ts";
import { decodeEntry, peekEntryLsn } from "../../common/entry.ts";
import { RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES } from "../../common/limits.ts";
import { readRecord } from "./record.ts";
import { decodeSegmentHeader, type SegmentHeader } from "./segment.ts";

/** Every `interval` bytes one (lsn, offset) pair, so a read by LSN seeks close to its entry. */
export interface IndexPoint {
  lsn: number;
  offset: number;
}

export interface ScanOptions {
  fileName: string;
  isLast: boolean;
  /** The LSN the segment must start at (the previous segment's last + 1), when known. */
  expectedFirstLsn?: number;
  recordBytesMax: number;
  tornWindowBytes: number;
  indexIntervalBytes: number;
}

export type SegmentScan =
  | { kind: "drop"; reason: string }
  | {
    kind: "ok";
    header: SegmentHeader;
    /** Last LSN in the segment; firstLsn - 1 when it holds no records. */
    lastLsn: number;
    /**
     * Bytes of data: less than the file's size when a torn tail is cut off (truncate there) or
     * when only preallocated zeros follow (keep them).
     */
    validBytes: number;
    index: IndexPoint[];
    /** Why the tail was cut, when it was. */
    tornTail?: string;
  };

const REPAIR_ADVICE =
  "Stop the node, move this segment and every later one out of the WAL directory, and restart: " +
  "the node recovers up to the damage and peers or a backup restore the rest";

function isAllZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** Offset of the first valid record found after `from`, or -1. */
function findValidRecordAfter(bytes: Uint8Array, from: number, recordBytesMax: number): number {
  for (let at = from + 1; at + RECORD_HEADER_BYTES < bytes.length; at++) {
    // A record's length is never 0: skip preallocated zeros without a full read attempt.
    if ((bytes[at] | bytes[at + 1] | bytes[at + 2] | bytes[at + 3]) === 0) continue;
    if (readRecord(bytes, at, recordBytesMax).ok) return at;
  }
  return -1;
}

/** The record at `offset` if it is whole, checked and holds LSN `lsn`; otherwise why not. */
function checkedRecord(
  bytes: Uint8Array,
  offset: number,
  lsn: number,
  recordBytesMax: number,
): { ok: true; next: number } | { ok: false; problem: string; truncated: boolean } {
  const read = readRecord(bytes, offset, recordBytesMax);
  if (!read.ok) {
    const truncated = read.problem === "truncated header" || read.problem === "truncated data";
    return { ok: false, problem: read.problem, truncated };
  }
  let held: number;
  try {
    held = peekEntryLsn(read.data) ?? decodeEntry(read.data).lsn;
  } catch {
    held = -1;
  }
  if (held !== lsn) {
    return {
      ok: false,
      problem: `record holds LSN ${held} where LSN ${lsn} belongs`,
      truncated: false,
    };
  }
  return { ok: true, next: read.next };
}

/** The sparse index as a scan lays it: a point at the first record of every `interval` bytes. */
class IndexBuilder {
  readonly points: IndexPoint[] = [];
  #lastOffset = -Infinity;

  constructor(readonly interval: number) {}

  /** Record `lsn` starts at `offset`. */
  add(lsn: number, offset: number): void {
    if (offset - this.#lastOffset < this.interval) return;
    this.points.push({ lsn, offset });
    this.#lastOffset = offset;
  }
}

export function scanSegment(bytes: Uint8Array, options: ScanOptions): SegmentScan {
  const { fileName } = options;
  const head = decodeSegmentHeader(bytes);
  if (!head.ok) {
    const header = bytes.subarray(0, SEGMENT_HEADER_BYTES);
    if (options.isLast && (bytes.length < SEGMENT_HEADER_BYTES || isAllZero(header))) {
      return { kind: "drop", reason: `segment header was never completed (${head.problem})` };
    }
    throw new CorruptionError(fileName, 0, head.problem, REPAIR_ADVICE);
  }
  const header = head.header;
  if (options.expectedFirstLsn !== undefined && header.firstLsn !== options.expectedFirstLsn) {
    throw new CorruptionError(
      fileName,
      32,
      `segment starts at LSN ${header.firstLsn} but LSN ${options.expectedFirstLsn} was expected`,
      REPAIR_ADVICE,
    );
  }
  const index = new IndexBuilder(options.indexIntervalBytes);
  let offset = SEGMENT_HEADER_BYTES;
  let nextLsn = header.firstLsn;
  while (offset < bytes.length) {
    const record = checkedRecord(bytes, offset, nextLsn, options.recordBytesMax);
    if (!record.ok && isAllZero(bytes.subarray(offset))) {
      // Preallocated space the writer never reached (see WAL_PREALLOCATE_BYTES_DEFAULT).
      return { kind: "ok", header, lastLsn: nextLsn - 1, validBytes: offset, index: index.points };
    }
    if (!record.ok) {
      const problem = record.problem;
      // Only the last batch can be torn: look for valid data past one batch from here.
      const later = findValidRecordAfter(
        bytes,
        offset + options.tornWindowBytes,
        options.recordBytesMax,
      );
      if (later >= 0) {
        throw new CorruptionError(
          fileName,
          offset,
          `${problem}, with valid records after it (first at byte ${later})`,
          REPAIR_ADVICE,
        );
      }
      if (!options.isLast) throw new CorruptionError(fileName, offset, problem, REPAIR_ADVICE);
      return {
        kind: "ok",
        header,
        lastLsn: nextLsn - 1,
        validBytes: offset,
        index: index.points,
        tornTail: `${problem} at byte ${offset}; cut ${bytes.length - offset} bytes`,
      };
    }
    index.add(nextLsn, offset);
    nextLsn++;
    offset = record.next;
  }
  return { kind: "ok", header, lastLsn: nextLsn - 1, validBytes: offset, index: index.points };
}

/**
 * {@link scanSegment} for a segment read piece by piece, for the case recovery nearly always
 * meets: a valid header, records with consecutive LSNs, then the end of the file or
 * preallocated zeros. Reading a whole 64 MiB segment into one new buffer cost 500-700 ms on our
 * VMs, most of it first touches of fresh memory (about 3 ms per MiB), while reading the same
 * file through one reused 1 MiB buffer took 3-7 ms.
 *
 * Feed it the unread bytes with {@link push} (it uses whole records and says how many bytes),
 * then call {@link finish} with what was left at the end of the file. Either gives up
 * (undefined) at anything else: a damaged header or record, an LSN out of place, a torn tail,
 * bytes after the zeros. Then scan the whole bytes with scanSegment, which decides what the
 * damage means. For a segment it accepts, the result is what scanSegment returns for the same
 * bytes (recovery_test.ts checks both on damaged and whole segments).
 */
export class SegmentStreamScan {
  readonly #options: ScanOptions;
  #header: SegmentHeader | undefined;
  #nextLsn = 0;
  /** File offset of the first byte not yet used. */
  #offset = 0;
  /** Where the records end, once only zeros may follow. */
  #zerosFrom: number | undefined;
  readonly #index: IndexBuilder;

  constructor(options: ScanOptions) {
    this.#options = options;
    this.#index = new IndexBuilder(options.indexIntervalBytes);
  }

  /**
   * Takes the unread bytes of the file (from the offset the last call stopped at) and returns
   * how many of them it used; the caller keeps the rest and pushes them again with more.
   */
  push(bytes: Uint8Array): number | undefined {
    let at = 0;
    if (this.#header === undefined) {
      if (bytes.length < SEGMENT_HEADER_BYTES) return 0;
      const head = decodeSegmentHeader(bytes);
      if (!head.ok) return undefined;
      const expected = this.#options.expectedFirstLsn;
      if (expected !== undefined && head.header.firstLsn !== expected) return undefined;
      this.#header = head.header;
      this.#nextLsn = head.header.firstLsn;
      at = SEGMENT_HEADER_BYTES;
    }
    while (at < bytes.length) {
      if (this.#zerosFrom !== undefined) {
        if (!isAllZero(bytes.subarray(at))) return undefined;
        at = bytes.length;
        break;
      }
      const record = checkedRecord(bytes, at, this.#nextLsn, this.#options.recordBytesMax);
      if (!record.ok) {
        if (record.truncated) break;
        // Preallocated zeros start here, if everything after is zero (checked as it comes).
        if (!isAllZero(bytes.subarray(at))) return undefined;
        this.#zerosFrom = this.#offset + at;
        at = bytes.length;
        break;
      }
      this.#index.add(this.#nextLsn, this.#offset + at);
      this.#nextLsn++;
      at = record.next;
    }
    this.#offset += at;
    return at;
  }

  /** The scan, given the bytes left unused at the end of the file; undefined to scan whole. */
  finish(rest: Uint8Array): SegmentScan | undefined {
    const header = this.#header;
    if (header === undefined) return undefined;
    // Less than a record left: only zeros the writer never reached may end a whole segment.
    if (rest.length > 0 && !isAllZero(rest)) return undefined;
    const zerosFrom = this.#zerosFrom ?? (rest.length > 0 ? this.#offset : undefined);
    return {
      kind: "ok",
      header,
      lastLsn: this.#nextLsn - 1,
      validBytes: zerosFrom ?? this.#offset,
      index: this.#index.points,
    };
  }
}
