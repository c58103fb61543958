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

/**
 * Reads the argument of a head of major type `major` (its top three bits) at `at`, up to four
 * argument bytes; returns [argument, next offset], or undefined when there is no such head.
 */
function peekArgument(bytes: Uint8Array, at: number, major: number): [number, number] | undefined {
  const head = bytes[at];
  if (head === undefined || (head & 0xe0) !== major) return undefined;
  const info = head & 0x1f;
  if (info < 24) return [info, at + 1];
  if (info === 24 && bytes.length >= at + 2) return [bytes[at + 1], at + 2];
  if (info === 25 && bytes.length >= at + 3) {
    return [(bytes[at + 1] << 8) | bytes[at + 2], at + 3];
  }
  if (info === 26 && bytes.length >= at + 5) {
    const n = ((bytes[at + 1] << 24) >>> 0) +
      ((bytes[at + 2] << 16) | (bytes[at + 3] << 8) | bytes[at + 4]);
    return [n, at + 5];
  }
  return undefined;
}

/**
 * Reads the count at `at` (as cbor-x writes counts: a minimal head, or float64 from 2^32);
 * returns [value, next offset], or undefined when there is no count there.
 */
function peekCount(bytes: Uint8Array, at: number): [number, number] | undefined {
  if (bytes[at] === 0xfb && bytes.length >= at + 9) {
    const n = new DataView(bytes.buffer, bytes.byteOffset + at + 1, 8).getFloat64(0);
    return isCount(n) ? [n, at + 9] : undefined;
  }
  return peekArgument(bytes, at, 0x00);
}

/**
 * The LSN of encoded entry bytes, read from the array's second element without decoding the
 * rest; undefined when the bytes do not start like an entry of this format (then decode them).
 * Recovery scans check every record's LSN, and decoding whole 1 KiB entries for that was most
 * of a restart's CPU.
 */
export function peekEntryLsn(bytes: Uint8Array): number | undefined {
  if (bytes.length < 3 || bytes[0] !== 0x8b || bytes[1] !== ENTRY_FORMAT) return undefined;
  return peekCount(bytes, 2)?.[0];
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
  if (bytes.length < 3 || bytes[0] !== 0x8b || bytes[1] !== ENTRY_FORMAT) return undefined;
  const lsn = peekCount(bytes, 2);
  if (lsn === undefined) return undefined;
  // The origin: a text string of any head size (origins with their tag pass 23 bytes once a
  // node id is 15 characters long).
  const text = peekArgument(bytes, lsn[1], 0x60);
  if (text === undefined) return undefined;
  const [length, start] = text;
  const end = start + length;
  if (length === 0 || end >= bytes.length) return undefined;
  let origin = "";
  for (let i = start; i < end; i++) {
    if (bytes[i] > 0x7f) return undefined;
    origin += String.fromCharCode(bytes[i]);
  }
  const seq = peekCount(bytes, end);
  if (seq === undefined) return undefined;
  return { lsn: lsn[0], origin, seq: seq[0] };
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/**
 * Decodes and validates entry bytes. Throws {@link InputError} on anything malformed: callers
 * pass bytes that already passed a CRC check, but a peer's CRC only proves the bytes arrived
 * as sent, not that they make sense.
 */
export function decodeEntry(bytes: Uint8Array): Entry {
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

/** A version vector: for each origin, the highest sequence held with no gap below it. */
export type VersionVector = Record<string, number>;

/** True when `have` holds everything `want` names. */
export function covers(have: VersionVector, want: VersionVector): boolean {
  for (const [origin, seq] of Object.entries(want)) {
    if ((have[origin] ?? 0) < seq) return false;
  }
  return true;
}
