/**
 * The log entry: the unit the WAL stores, replication ships and the key-value view applies.
 *
 * Identity is `(origin, seq)`: the node that first accepted the write and that node's dense
 * sequence number, unique cluster-wide. The `lsn` is local: where this node's WAL holds it.
 * The version of a key is `(hlc, origin)`, compared the same way on every node.
 *
 * @module
 */
import { Encoder } from "cbor-x";
import { InputError } from "./errors.ts";
import { KEY_BYTES_MAX } from "./limits.ts";

export type Op = "put" | "delete" | "append";
const OPS: readonly Op[] = ["put", "delete", "append"];

export interface Entry {
  /** Position in this node's WAL; assigned by the WAL on append. */
  lsn: number;
  /** Node id of the node that accepted the write. */
  origin: string;
  /** The origin's sequence number, dense from 1. */
  seq: number;
  /** Hybrid logical clock timestamp (see hlc.ts). */
  hlc: number;
  op: Op;
  /** Key for put/delete; "" for an append. */
  key: string;
  /** Payload for put/append; null for a delete. */
  value: Uint8Array | null;
  /** MIME type of the value ("" for none). */
  contentType: string;
  /** Version this write overwrote, as seen by the origin: hlc 0 when the key was absent. */
  prevHlc: number;
  prevOrigin: string;
}

/** A version of a key. */
export interface Version {
  hlc: number;
  origin: string;
}

/** Total order on versions: HLC first, origin id to break ties; the same on every node. */
export function compareVersions(a: Version, b: Version): number {
  if (a.hlc !== b.hlc) return a.hlc < b.hlc ? -1 : 1;
  return a.origin < b.origin ? -1 : a.origin > b.origin ? 1 : 0;
}

const ENTRY_FORMAT = 1;
const encoder = new Encoder({ useRecords: false, mapsAsObjects: true });

/** CBOR bytes of an entry (an array, so field names are not repeated in every record). */
export function encodeEntry(entry: Entry): Uint8Array {
  const size = directEntryBytes(entry);
  if (size < 0) return encodeEntryGeneric(entry);
  const out = new Uint8Array(size);
  writeEntryDirect(out, 0, entry);
  return out;
}

/** The entry through cbor-x: the reference encoding, and the path for uncommon field values. */
export function encodeEntryGeneric(entry: Entry): Uint8Array {
  return encoder.encode([
    ENTRY_FORMAT,
    entry.lsn,
    entry.origin,
    entry.seq,
    entry.hlc,
    OPS.indexOf(entry.op),
    entry.key,
    entry.value,
    entry.contentType,
    entry.prevHlc,
    entry.prevOrigin,
  ]);
}

// A direct encoder for the common entry: it writes the bytes cbor-x writes for the same array
// (minimal heads, integers of 2^32 and up as float64, a Uint8Array as tag 64 around a byte
// string, null as 0xf6), straight into the caller's buffer: the WAL lays entries into its
// batch buffer with no allocation per entry (a 1 KiB Uint8Array costs about 0.8 µs to make,
// cbor-x about 1 µs per entry). Anything it does not cover (non-ASCII strings, a Uint8Array
// subclass, a field that is not a count) gets -1 from directEntryBytes and goes through
// cbor-x. entry_cbor_test.ts checks that the two agree byte for byte.
const float64Scratch = new DataView(new ArrayBuffer(8));

function countBytes(n: number): number {
  if (!(Number.isSafeInteger(n) && n >= 0)) return -1;
  return n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n <= 0xffffffff ? 5 : 9;
}

function headBytes(length: number): number {
  return length < 24 ? 1 : length < 0x100 ? 2 : length < 0x10000 ? 3 : 5;
}

/** Encoded size of an ASCII text string; -1 when it holds anything else. */
function asciiBytes(text: string): number {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return -1;
  return headBytes(text.length) + text.length;
}

/** Writes a head (major type in the top three bits) for `n` at `at`; returns the next offset. */
function writeHead(out: Uint8Array, at: number, major: number, n: number): number {
  if (n < 24) {
    out[at] = major | n;
    return at + 1;
  }
  if (n < 0x100) {
    out[at] = major | 24;
    out[at + 1] = n;
    return at + 2;
  }
  if (n < 0x10000) {
    out[at] = major | 25;
    out[at + 1] = n >>> 8;
    out[at + 2] = n & 0xff;
    return at + 3;
  }
  out[at] = major | 26;
  out[at + 1] = n >>> 24;
  out[at + 2] = (n >>> 16) & 0xff;
  out[at + 3] = (n >>> 8) & 0xff;
  out[at + 4] = n & 0xff;
  return at + 5;
}

function writeCount(out: Uint8Array, at: number, n: number): number {
  if (n <= 0xffffffff) return writeHead(out, at, 0x00, n);
  out[at] = 0xfb;
  float64Scratch.setFloat64(0, n);
  for (let i = 0; i < 8; i++) out[at + 1 + i] = float64Scratch.getUint8(i);
  return at + 9;
}

function writeAscii(out: Uint8Array, at: number, text: string): number {
  at = writeHead(out, at, 0x60, text.length);
  for (let i = 0; i < text.length; i++) out[at + i] = text.charCodeAt(i);
  return at + text.length;
}

/**
 * Size of the entry's encoding when {@link writeEntryDirect} can write it; -1 when it cannot
 * (then use {@link encodeEntry}, which falls back to cbor-x).
 */
export function directEntryBytes(entry: Entry): number {
  const value = entry.value;
  if (value !== null && Object.getPrototypeOf(value) !== Uint8Array.prototype) return -1;
  if (OPS.indexOf(entry.op) < 0) return -1;
  const parts = [
    countBytes(entry.lsn),
    asciiBytes(entry.origin),
    countBytes(entry.seq),
    countBytes(entry.hlc),
    asciiBytes(entry.key),
    asciiBytes(entry.contentType),
    countBytes(entry.prevHlc),
    asciiBytes(entry.prevOrigin),
  ];
  // Array head, format, op index, and the value (null, or tag 64 around a byte string).
  let size = 3 + (value === null ? 1 : 2 + headBytes(value.length) + value.length);
  for (const part of parts) {
    if (part < 0) return -1;
    size += part;
  }
  return size;
}

/**
 * Writes the entry's CBOR at `at` of `out` (room for directEntryBytes(entry) bytes, which must
 * not be -1) and returns the offset after it: the same bytes {@link encodeEntryGeneric} makes.
 */
export function writeEntryDirect(out: Uint8Array, at: number, entry: Entry): number {
  const value = entry.value;
  out[at] = 0x8b; // array of 11
  out[at + 1] = ENTRY_FORMAT;
  at = writeCount(out, at + 2, entry.lsn);
  at = writeAscii(out, at, entry.origin);
  at = writeCount(out, at, entry.seq);
  at = writeCount(out, at, entry.hlc);
  out[at++] = OPS.indexOf(entry.op);
  at = writeAscii(out, at, entry.key);
  if (value === null) out[at++] = 0xf6;
  else {
    out[at++] = 0xd8; // tag 64: a Uint8Array
    out[at++] = 0x40;
    at = writeHead(out, at, 0x40, value.length);
    out.set(value, at);
    at += value.length;
  }
  at = writeAscii(out, at, entry.contentType);
  at = writeCount(out, at, entry.prevHlc);
  return writeAscii(out, at, entry.prevOrigin);
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/**
 * A cursor over one entry's bytes in the direct encoding's form (what {@link writeEntryDirect}
 * writes): each read returns the field and moves past it, or returns -1 (counts) or undefined
 * (strings) when the bytes there are not in that form. No tuple per field: a follower decodes
 * every entry it receives. Use it through {@link readDirect}, which lets go of the bytes.
 */
class DirectReader {
  bytes: Uint8Array = EMPTY;
  at = 0;
  /** Values are views into `bytes` rather than copies (see decodeEntry's `shareValue`). */
  shareValue = false;
  // The strings of the last entry decoded: origins and content types repeat entry to entry.
  origin = "";
  contentType = "";
  prevOrigin = "";

  /** The argument of a head of major type `major` (at most four argument bytes), or -1. */
  argument(major: number): number {
    const bytes = this.bytes;
    const at = this.at;
    const head = bytes[at];
    if (head === undefined || (head & 0xe0) !== major) return -1;
    const info = head & 0x1f;
    if (info < 24) {
      this.at = at + 1;
      return info;
    }
    if (info === 24 && bytes.length >= at + 2) {
      this.at = at + 2;
      return bytes[at + 1];
    }
    if (info === 25 && bytes.length >= at + 3) {
      this.at = at + 3;
      return (bytes[at + 1] << 8) | bytes[at + 2];
    }
    if (info === 26 && bytes.length >= at + 5) {
      this.at = at + 5;
      return ((bytes[at + 1] << 24) >>> 0) + ((bytes[at + 2] << 16) | (bytes[at + 3] << 8) |
        bytes[at + 4]);
    }
    return -1;
  }

  /** A count as cbor-x writes it (a minimal head, or float64 from 2^32), or -1. */
  count(): number {
    const bytes = this.bytes;
    if (bytes[this.at] !== 0xfb) return this.argument(0x00);
    if (bytes.length < this.at + 9) return -1;
    // CBOR is big-endian; the scratch float is laid in the platform's order.
    const from = this.at + 1;
    for (let i = 0; i < 8; i++) float64Bytes[LITTLE_ENDIAN ? 7 - i : i] = bytes[from + i];
    const n = float64Array[0];
    this.at += 9;
    return isCount(n) ? n : -1;
  }

  /** An ASCII text string (`previous` itself when the bytes spell it), or undefined. */
  ascii(previous: string): string | undefined {
    const length = this.argument(0x60);
    const start = this.at;
    const end = start + length;
    const bytes = this.bytes;
    if (length < 0 || end > bytes.length) return undefined;
    let same = previous.length === length;
    for (let i = start; i < end; i++) {
      const c = bytes[i];
      if (c > 0x7f) return undefined;
      if (same && previous.charCodeAt(i - start) !== c) same = false;
    }
    this.at = end;
    if (same) return previous;
    let text = "";
    for (let i = start; i < end; i += ASCII_CHUNK) {
      const chars = bytes.subarray(i, Math.min(end, i + ASCII_CHUNK)) as unknown as number[];
      text += String.fromCharCode.apply(null, chars);
    }
    return text;
  }
}

const float64Array = new Float64Array(1);
const float64Bytes = new Uint8Array(float64Array.buffer);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
// Characters turned into a string per call (apply's argument count is bounded).
const ASCII_CHUNK = 4096;
const EMPTY = new Uint8Array();
const directReader = new DirectReader();

/**
 * Runs `read` over `bytes` from after the array head and format (undefined when the bytes do
 * not start like an entry of this format).
 */
function readDirect<T>(
  bytes: Uint8Array,
  read: (r: DirectReader) => T,
  shareValue = false,
): T | undefined {
  if (bytes.length < 3 || bytes[0] !== 0x8b || bytes[1] !== ENTRY_FORMAT) return undefined;
  const r = directReader;
  r.bytes = bytes;
  r.at = 2;
  r.shareValue = shareValue;
  try {
    return read(r);
  } finally {
    r.bytes = EMPTY;
    r.shareValue = false;
  }
}

/**
 * The LSN of encoded entry bytes, read from the array's second element without decoding the
 * rest; undefined when the bytes do not start like an entry of this format (then decode them).
 * Recovery scans check every record's LSN, and decoding whole 1 KiB entries for that was most
 * of a restart's CPU.
 */
export function peekEntryLsn(bytes: Uint8Array): number | undefined {
  const lsn = readDirect(bytes, (r) => r.count());
  return lsn === undefined || lsn < 0 ? undefined : lsn;
}

/** An entry's position and identity, as a leader needs them to decide what to ship. */
export interface EntryIdentity {
  lsn: number;
  origin: string;
  seq: number;
}

/**
 * LSN, origin and sequence of encoded entry bytes without decoding the value; undefined when
 * they are not in the direct encoding's form (an origin that is empty or not ASCII, say), and
 * then the caller decodes. Catch-up reads whole WAL segments and ships their records as they
 * are: decoding and re-encoding every 1 KiB entry was half the leader's CPU there.
 */
export function peekEntryIdentity(bytes: Uint8Array): EntryIdentity | undefined {
  return readDirect(bytes, (r) => {
    const lsn = r.count();
    const origin = lsn < 0 ? undefined : r.ascii(r.origin);
    if (origin === undefined || origin.length === 0 || r.at >= bytes.length) return undefined;
    r.origin = origin;
    const seq = r.count();
    return seq < 0 ? undefined : { lsn, origin, seq };
  });
}

/**
 * Decodes the direct encoding's form of an entry (what {@link writeEntryDirect} writes) without
 * cbor-x; undefined for anything else, which {@link decodeEntry} then hands to cbor-x, so the
 * two paths decide every input alike. A follower decodes every entry it receives, and cbor-x's
 * generic decoder (an array, its strings, a copy of the value, then ours) was the largest part
 * of that. It only accepts what it fully checks: the eleven fields in order, each of its type,
 * and nothing after them.
 */
export function decodeEntryDirect(bytes: Uint8Array, shareValue = false): Entry | undefined {
  return readDirect(bytes, readEntry, shareValue);
}

function readEntry(r: DirectReader): Entry | undefined {
  const bytes = r.bytes;
  const lsn = r.count();
  if (lsn < 0) return undefined;
  const origin = r.ascii(r.origin);
  if (origin === undefined || origin.length === 0) return undefined;
  const seq = r.count();
  const hlc = seq < 0 ? -1 : r.count();
  if (hlc < 0) return undefined;
  const opIndex = bytes[r.at++];
  if (opIndex === undefined || opIndex >= OPS.length) return undefined;
  const key = r.ascii("");
  if (key === undefined) return undefined;
  let value: Uint8Array | null = null;
  if (bytes[r.at] === 0xf6) r.at++;
  else {
    if (bytes[r.at] !== 0xd8 || bytes[r.at + 1] !== 0x40) return undefined;
    r.at += 2;
    const length = r.argument(0x40);
    if (length < 0 || r.at + length > bytes.length) return undefined;
    value = r.shareValue ? bytes.subarray(r.at, r.at + length) : bytes.slice(r.at, r.at + length);
    r.at += length;
  }
  const contentType = r.ascii(r.contentType);
  if (contentType === undefined) return undefined;
  const prevHlc = r.count();
  const prevOrigin = prevHlc < 0 ? undefined : r.ascii(r.prevOrigin);
  if (prevOrigin === undefined || r.at !== bytes.length) return undefined;
  r.origin = origin;
  r.contentType = contentType;
  r.prevOrigin = prevOrigin;
  return {
    lsn,
    origin,
    seq,
    hlc,
    op: OPS[opIndex],
    key,
    value,
    contentType,
    prevHlc,
    prevOrigin,
  };
}

/**
 * Decodes and validates entry bytes. Throws {@link InputError} on anything malformed: callers
 * pass bytes that already passed a CRC check, but a peer's CRC only proves the bytes arrived
 * as sent, not that they make sense.
 *
 * The value is a copy unless `shareValue` is set: then it may be a view into `bytes`, for a
 * caller whose bytes are never written again (a replication batch's payload, which the key-value
 * view then keeps, accounting for it: Keyspace's shared buffers). Copying each 1 KiB value into
 * memory of its own was a sixth of a catching-up follower's CPU.
 */
export function decodeEntry(bytes: Uint8Array, options: { shareValue?: boolean } = {}): Entry {
  return decodeEntryDirect(bytes, options.shareValue) ?? decodeEntryGeneric(bytes);
}

/** Decodes entry bytes through cbor-x: the reference decoding, and the path for any form. */
export function decodeEntryGeneric(bytes: Uint8Array): Entry {
  let raw: unknown;
  try {
    raw = encoder.decode(bytes);
  } catch (cause) {
    throw new InputError("bad_request", "Cannot decode entry: not valid CBOR", { cause });
  }
  if (!Array.isArray(raw) || raw.length !== 11 || raw[0] !== ENTRY_FORMAT) {
    throw new InputError("bad_request", "Cannot decode entry: unknown entry format");
  }
  const [, lsn, origin, seq, hlc, opIndex, key, value, contentType, prevHlc, prevOrigin] = raw;
  if (
    !isCount(lsn) || typeof origin !== "string" || origin.length === 0 || !isCount(seq) ||
    !isCount(hlc) || !isCount(opIndex) || opIndex >= OPS.length || typeof key !== "string" ||
    !(value === null || value instanceof Uint8Array) || typeof contentType !== "string" ||
    !isCount(prevHlc) || typeof prevOrigin !== "string"
  ) {
    throw new InputError("bad_request", "Cannot decode entry: a field has the wrong type");
  }
  return {
    lsn,
    origin,
    seq,
    hlc,
    op: OPS[opIndex],
    key,
    value: value === null ? null : new Uint8Array(value),
    contentType,
    prevHlc,
    prevOrigin,
  };
}

/** UTF-8 length of `text` without encoding it (a lone surrogate counts 3, as TextEncoder's U+FFFD). */
function utf8Bytes(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) bytes += 1;
    else if (
      c >= 0xd800 && c <= 0xdbff && i + 1 < text.length &&
      (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00
    ) {
      bytes += 2; // a pair: 2 UTF-16 units, 4 bytes
      i++;
    } else bytes += 2;
  }
  return bytes;
}

/** Checks a key: non-empty, at most KEY_BYTES_MAX UTF-8 bytes, no control characters. */
export function validateKey(key: string): void {
  if (key.length === 0) throw new InputError("bad_key", "Invalid key: it is empty");
  const bytes = utf8Bytes(key);
  if (bytes > KEY_BYTES_MAX) {
    throw new InputError(
      "bad_key",
      `Invalid key: ${bytes} bytes is over the limit of ${KEY_BYTES_MAX}`,
    );
  }
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(key)) {
    throw new InputError("bad_key", "Invalid key: it contains a control character");
  }
  if (key.isWellFormed && !key.isWellFormed()) {
    throw new InputError("bad_key", "Invalid key: it is not well-formed Unicode");
  }
}

/**
 * A copy of `text` that shares no memory with the string it came from. V8 makes a substring
 * of 13 or more characters a view into its parent (a "sliced string"): a header value cut out
 * of an HTTP request's head keeps the whole head alive as long as it is kept. (Keys are not
 * affected: V8 internalizes a string used as a Map key, in place, which lets the parent go.)
 * A JSON round trip copies any string exactly, lone surrogates included.
 */
function ownString(text: string): string {
  return JSON.parse(JSON.stringify(text));
}

const interned = new Map<string, string>();
// Distinct strings shared; past this, each is copied (ownString) instead.
const INTERNED_STRINGS_MAX = 256;

/**
 * One shared copy of a string from a small vocabulary (content types, origins): the first
 * INTERNED_STRINGS_MAX distinct ones are shared, any other is copied. Every key-value record
 * keeps its content type and origins, and most records share a handful of each; a request's
 * header would otherwise keep its request's head alive in each record (docs/BENCHMARKS.md,
 * session 17), and a decoded snapshot would give each record its own copies.
 */
export function internString(text: string): string {
  const known = interned.get(text);
  if (known !== undefined) return known;
  const own = ownString(text);
  if (interned.size < INTERNED_STRINGS_MAX) interned.set(own, own);
  return own;
}

/** A version vector: for each origin, the highest sequence held with no gap below it. */
export type VersionVector = Record<string, number>;

/** True when `have` holds everything `want` names. */
export function covers(have: VersionVector, want: VersionVector): boolean {
  for (const [origin, seq] of Object.entries(want)) {
    if ((have[origin] ?? 0) < seq) return false;
  }
  return true;
}
