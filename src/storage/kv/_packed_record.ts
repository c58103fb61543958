/**
 * The form a key's record takes inside the key-value view: the same fields as a KeyRecord, packed
 * so that keeping it costs the garbage collector one object.
 *
 * Every record the view keeps survives the young generation's next two scavenges, and a scavenge's
 * pause grows with what survives it: at 10 clients the p99 of a node's writes was set by those
 * pauses (docs/BENCHMARKS.md, sessions 23 and 25). Kept as an object literal, a record was four
 * objects to copy: itself, the two HLC timestamps (numbers past 2^31, so V8 boxes each in a heap
 * number of its own) and the value's Uint8Array view. Here the timestamps are two small integers
 * each and a value that is a view into a larger buffer (a slab of request bodies, a replication
 * batch) is kept as that buffer and its place in it; the view is made when the value is read.
 *
 * @module
 */
import type { KeyRecord } from "./keyspace.ts";

// 2^26: an HLC (wallMs * 2^10 + logical, under 2^53) splits into two integers under 2^30,
// small enough to stay unboxed.
const HLC_SPLIT = 2 ** 26;

/** The low part of an HLC that splits exactly, or -1 when it does not (kept whole, as high). */
function hlcLow(hlc: number): number {
  return Number.isSafeInteger(hlc) && hlc >= 0 ? hlc % HLC_SPLIT : -1;
}

/** The high part of an HLC given its low part: the HLC itself when it does not split. */
function hlcHigh(hlc: number, low: number): number {
  return low < 0 ? hlc : (hlc - low) / HLC_SPLIT;
}

function joinHlc(high: number, low: number): number {
  return low < 0 ? high : high * HLC_SPLIT + low;
}

export class PackedRecord implements KeyRecord {
  // The value: null (a tombstone), a Uint8Array that owns its buffer (valueLength -1), or the
  // buffer a view was into, with the view's offset and length.
  readonly #value: Uint8Array | ArrayBufferLike | null;
  readonly #valueOffset: number;
  readonly #valueLength: number;
  readonly contentType: string;
  readonly #hlcHigh: number;
  readonly #hlcLow: number;
  readonly origin: string;
  readonly seq: number;
  readonly lsn: number;
  readonly #prevHlcHigh: number;
  readonly #prevHlcLow: number;
  readonly prevOrigin: string;

  constructor(
    value: Uint8Array | null,
    contentType: string,
    hlc: number,
    origin: string,
    seq: number,
    lsn: number,
    prevHlc: number,
    prevOrigin: string,
  ) {
    if (value !== null && value.byteLength < value.buffer.byteLength) {
      this.#value = value.buffer;
      this.#valueOffset = value.byteOffset;
      this.#valueLength = value.byteLength;
    } else {
      this.#value = value;
      this.#valueOffset = 0;
      this.#valueLength = -1;
    }
    this.contentType = contentType;
    this.#hlcLow = hlcLow(hlc);
    this.#hlcHigh = hlcHigh(hlc, this.#hlcLow);
    this.origin = origin;
    this.seq = seq;
    this.lsn = lsn;
    this.#prevHlcLow = hlcLow(prevHlc);
    this.#prevHlcHigh = hlcHigh(prevHlc, this.#prevHlcLow);
    this.prevOrigin = prevOrigin;
  }

  /** A record's fields packed (the record itself when it already is). */
  static of(record: KeyRecord): PackedRecord {
    if (record instanceof PackedRecord) return record;
    return new PackedRecord(
      record.value,
      record.contentType,
      record.hlc,
      record.origin,
      record.seq,
      record.lsn,
      record.prevHlc,
      record.prevOrigin,
    );
  }

  /** The same record with `value` (same length) in place of its value. */
  withValue(value: Uint8Array): PackedRecord {
    return new PackedRecord(
      value,
      this.contentType,
      this.hlc,
      this.origin,
      this.seq,
      this.lsn,
      this.prevHlc,
      this.prevOrigin,
    );
  }

  /** The value's bytes (a new view each time when it lives in a shared buffer); null: deleted. */
  get value(): Uint8Array | null {
    return this.#valueLength < 0
      ? this.#value as Uint8Array | null
      : new Uint8Array(this.#value as ArrayBuffer, this.#valueOffset, this.#valueLength);
  }

  get isTombstone(): boolean {
    return this.#value === null;
  }

  /** The buffer the value lives in, without making a view (undefined: a tombstone). */
  get valueBuffer(): ArrayBufferLike | undefined {
    const value = this.#value;
    if (value === null) return undefined;
    return this.#valueLength < 0 ? (value as Uint8Array).buffer : value as ArrayBufferLike;
  }

  /** The value is a view into a larger buffer (see Keyspace's shared buffers). */
  get isShared(): boolean {
    return this.#valueLength >= 0;
  }

  /** The value's length in bytes (0 for a tombstone). */
  get valueBytes(): number {
    const value = this.#value;
    if (value === null) return 0;
    return this.#valueLength < 0 ? (value as Uint8Array).byteLength : this.#valueLength;
  }

  get hlc(): number {
    return joinHlc(this.#hlcHigh, this.#hlcLow);
  }

  get prevHlc(): number {
    return joinHlc(this.#prevHlcHigh, this.#prevHlcLow);
  }
}
