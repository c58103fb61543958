/**
 * Replication frames: the bodies of the messages replication sends over the cluster transport,
 * and their validation. Every body from a peer goes through a `parse*` function before any
 * state machine sees it; anything malformed throws {@link ProtocolError} and changes nothing.
 * Entries travel framed exactly as in the WAL (length, CRC-32, CBOR entry), so each one is
 * length- and CRC-checked on arrival, then decoded and validated.
 *
 * | type            | direction          | body                                                  |
 * |-----------------|--------------------|-------------------------------------------------------|
 * | `repl.open`     | leader -> follower | session, leader's first and last LSN                   |
 * | `repl.opened`   | follower -> leader | session, follower's cursor for this leader, vv, credit |
 * | `repl.batch`    | leader -> follower | session, startLsn, fromLsn..toLsn, framed entries      |
 * | `repl.ack`      | follower -> leader | session, ackedLsn, vv, hlc, credit                     |
 * | `repl.snap`     | leader -> follower | session, lsn, chunk index, last?, vv, framed tuples    |
 * | `repl.snapack`  | follower -> leader | session, chunk index                                   |
 * | `repl.read`     | any -> any         | request id, key (quorum reads)                         |
 * | `repl.readok`   | any -> any         | request id, framed entry of the key's version or null  |
 * | `repl.repair`   | any -> any         | framed entry (read repair)                             |
 *
 * @module
 */
import { concatBytes } from "../common/bytes.ts";
import { Encoder } from "cbor-x";
import { decodeEntry, encodeEntry, type Entry, type VersionVector } from "../common/entry.ts";
import { InputError, ProtocolError } from "../common/errors.ts";
import {
  BATCH_ENTRIES_MAX,
  KEY_BYTES_MAX,
  RECORD_BYTES_MAX,
  REPL_BATCH_BYTES_MAX,
  REPL_CREDIT_ENTRIES_MAX,
} from "../common/limits.ts";
import type { KeyRecord } from "../storage/kv/keyspace.ts";
import { frameRecord, readRecord } from "../storage/wal/record.ts";

/** Version of the replication frames; a frame of another version is refused. */
export const REPL_PROTOCOL_VERSION = 1;

export const MSG_OPEN = "repl.open";
export const MSG_OPENED = "repl.opened";
export const MSG_BATCH = "repl.batch";
export const MSG_ACK = "repl.ack";
export const MSG_SNAP = "repl.snap";
export const MSG_SNAPACK = "repl.snapack";
export const MSG_READ = "repl.read";
export const MSG_READOK = "repl.readok";
export const MSG_REPAIR = "repl.repair";

export interface OpenFrame {
  v: number;
  session: number;
  firstLsn: number;
  lastLsn: number;
}

export interface OpenedFrame {
  v: number;
  session: number;
  /** Highest leader LSN the follower holds everything up to (0: unknown). */
  cursor: number;
  vv: VersionVector;
  credit: number;
}

export interface BatchFrame {
  v: number;
  session: number;
  /** First LSN of the session: the first batch of a session must start here. */
  startLsn: number;
  fromLsn: number;
  /** The batch covers the leader's log fromLsn..toLsn; entries the follower holds are left out. */
  toLsn: number;
  count: number;
  /** `count` WAL-framed entries, concatenated. */
  records: Uint8Array;
  /** The leader's last LSN when it sent the batch (0 when absent): the follower's lag. */
  lastLsn: number;
}

export interface AckFrame {
  v: number;
  session: number;
  ackedLsn: number;
  vv: VersionVector;
  /** The follower's HLC when it sent the ack: its own later writes are above it. */
  hlc: number;
  credit: number;
}

export interface SnapFrame {
  v: number;
  session: number;
  /** Leader LSN the snapshot state is at; the tail follows from lsn + 1. */
  lsn: number;
  index: number;
  last: boolean;
  vv: VersionVector;
  /** One WAL-framed CBOR array of key tuples. */
  records: Uint8Array;
}

export interface SnapAckFrame {
  v: number;
  session: number;
  index: number;
}

export interface ReadFrame {
  v: number;
  id: number;
  key: string;
}

export interface ReadOkFrame {
  v: number;
  id: number;
  /** The key's current version as a framed entry (a delete for a tombstone), or null. */
  record: Uint8Array | null;
}

export interface RepairFrame {
  v: number;
  record: Uint8Array;
}

function fail(type: string, reason: string): never {
  throw new ProtocolError(`Cannot accept ${type} frame: ${reason}`);
}

function object(type: string, body: unknown): Record<string, unknown> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    fail(type, "body is not a map");
  }
  const b = body as Record<string, unknown>;
  if (b.v !== REPL_PROTOCOL_VERSION) {
    fail(type, `protocol version ${JSON.stringify(b.v)}, expected ${REPL_PROTOCOL_VERSION}`);
  }
  return b;
}

function count(
  type: string,
  b: Record<string, unknown>,
  field: string,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const value = b[field];
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0 || value > max) {
    fail(type, `${field} is not a whole number from 0 to ${max}`);
  }
  return value;
}

function bytes(type: string, b: Record<string, unknown>, field: string, max: number): Uint8Array {
  const value = b[field];
  if (!(value instanceof Uint8Array)) fail(type, `${field} is not bytes`);
  if (value.length > max) fail(type, `${field} is ${value.length} bytes, over the limit of ${max}`);
  return value;
}

function versionVector(type: string, b: Record<string, unknown>): VersionVector {
  const value = b.vv;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    fail(type, "vv is not a map");
  }
  const out: VersionVector = {};
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > 10_000) fail(type, "vv names too many origins");
  for (const [origin, seq] of entries) {
    if (
      origin.length === 0 || origin.length > 64 || typeof seq !== "number" ||
      !Number.isSafeInteger(seq) || seq < 0
    ) {
      fail(type, `vv entry ${JSON.stringify(origin)} is malformed`);
    }
    out[origin] = seq;
  }
  return out;
}

export function parseOpen(body: unknown): OpenFrame {
  const b = object(MSG_OPEN, body);
  const frame = {
    v: REPL_PROTOCOL_VERSION,
    session: count(MSG_OPEN, b, "session"),
    firstLsn: count(MSG_OPEN, b, "firstLsn"),
    lastLsn: count(MSG_OPEN, b, "lastLsn"),
  };
  return frame;
}

export function parseOpened(body: unknown): OpenedFrame {
  const b = object(MSG_OPENED, body);
  return {
    v: REPL_PROTOCOL_VERSION,
    session: count(MSG_OPENED, b, "session"),
    cursor: count(MSG_OPENED, b, "cursor"),
    vv: versionVector(MSG_OPENED, b),
    credit: count(MSG_OPENED, b, "credit", REPL_CREDIT_ENTRIES_MAX),
  };
}

export function parseAck(body: unknown): AckFrame {
  const b = object(MSG_ACK, body);
  return {
    v: REPL_PROTOCOL_VERSION,
    session: count(MSG_ACK, b, "session"),
    ackedLsn: count(MSG_ACK, b, "ackedLsn"),
    vv: versionVector(MSG_ACK, b),
    hlc: count(MSG_ACK, b, "hlc"),
    credit: count(MSG_ACK, b, "credit", REPL_CREDIT_ENTRIES_MAX),
  };
}

/** Checks a batch's header; its entries are checked by {@link decodeBatchEntries}. */
export function parseBatch(body: unknown): BatchFrame {
  const b = object(MSG_BATCH, body);
  const frame: BatchFrame = {
    v: REPL_PROTOCOL_VERSION,
    session: count(MSG_BATCH, b, "session"),
    startLsn: count(MSG_BATCH, b, "startLsn"),
    fromLsn: count(MSG_BATCH, b, "fromLsn"),
    toLsn: count(MSG_BATCH, b, "toLsn"),
    count: count(MSG_BATCH, b, "count", BATCH_ENTRIES_MAX),
    records: bytes(MSG_BATCH, b, "records", REPL_BATCH_BYTES_MAX + RECORD_BYTES_MAX),
    lastLsn: b.lastLsn === undefined ? 0 : count(MSG_BATCH, b, "lastLsn"),
  };
  if (frame.fromLsn < 1 || frame.toLsn < frame.fromLsn) {
    fail(MSG_BATCH, `range ${frame.fromLsn}..${frame.toLsn} is empty or reversed`);
  }
  if (frame.count > frame.toLsn - frame.fromLsn + 1) {
    fail(MSG_BATCH, `${frame.count} entries do not fit in ${frame.fromLsn}..${frame.toLsn}`);
  }
  return frame;
}

/**
 * Decodes a batch's entries, checking each frame's length and CRC, each entry's fields, and
 * that LSNs rise strictly inside fromLsn..toLsn. All or nothing: one bad entry refuses the batch.
 */
export function decodeBatchEntries(
  frame: Pick<BatchFrame, "fromLsn" | "toLsn" | "count" | "records">,
): Entry[] {
  const out: Entry[] = [];
  let at = 0;
  let lastLsn = frame.fromLsn - 1;
  while (at < frame.records.length) {
    const record = readRecord(frame.records, at, RECORD_BYTES_MAX);
    if (!record.ok) fail(MSG_BATCH, `entry ${out.length} at byte ${at}: ${record.problem}`);
    let entry: Entry;
    try {
      entry = decodeEntry(record.data);
    } catch (error) {
      fail(MSG_BATCH, `entry ${out.length}: ${(error as InputError).message}`);
    }
    if (entry.lsn <= lastLsn || entry.lsn > frame.toLsn) {
      fail(MSG_BATCH, `entry LSN ${entry.lsn} is out of order in ${frame.fromLsn}..${frame.toLsn}`);
    }
    if (entry.seq < 1) fail(MSG_BATCH, `entry LSN ${entry.lsn} has sequence 0`);
    lastLsn = entry.lsn;
    out.push(entry);
    at = record.next;
  }
  if (out.length !== frame.count) {
    fail(MSG_BATCH, `holds ${out.length} entries, header says ${frame.count}`);
  }
  return out;
}

/** Frames entries for a batch. */
export function encodeBatchRecords(entries: readonly Entry[]): Uint8Array {
  return concatBytes(entries.map((entry) => frameRecord(encodeEntry(entry))));
}

export function parseSnap(body: unknown): SnapFrame {
  const b = object(MSG_SNAP, body);
  if (typeof b.last !== "boolean") fail(MSG_SNAP, "last is not a boolean");
  return {
    v: REPL_PROTOCOL_VERSION,
    session: count(MSG_SNAP, b, "session"),
    lsn: count(MSG_SNAP, b, "lsn"),
    index: count(MSG_SNAP, b, "index"),
    last: b.last,
    vv: versionVector(MSG_SNAP, b),
    records: bytes(MSG_SNAP, b, "records", REPL_BATCH_BYTES_MAX + RECORD_BYTES_MAX),
  };
}

export function parseSnapAck(body: unknown): SnapAckFrame {
  const b = object(MSG_SNAPACK, body);
  return {
    v: REPL_PROTOCOL_VERSION,
    session: count(MSG_SNAPACK, b, "session"),
    index: count(MSG_SNAPACK, b, "index"),
  };
}

export function parseRead(body: unknown): ReadFrame {
  const b = object(MSG_READ, body);
  if (typeof b.key !== "string" || b.key.length === 0 || b.key.length > KEY_BYTES_MAX) {
    fail(MSG_READ, "key is malformed");
  }
  return { v: REPL_PROTOCOL_VERSION, id: count(MSG_READ, b, "id"), key: b.key };
}

export function parseReadOk(body: unknown): ReadOkFrame {
  const b = object(MSG_READOK, body);
  const record = b.record === null ? null : bytes(MSG_READOK, b, "record", RECORD_BYTES_MAX + 8);
  return { v: REPL_PROTOCOL_VERSION, id: count(MSG_READOK, b, "id"), record };
}

export function parseRepair(body: unknown): RepairFrame {
  const b = object(MSG_REPAIR, body);
  return { v: REPL_PROTOCOL_VERSION, record: bytes(MSG_REPAIR, b, "record", RECORD_BYTES_MAX + 8) };
}

/** A key's current version as the entry that wrote it (a tombstone becomes a delete). */
export { recordToEntry } from "../storage/kv/keyspace.ts";

/** Frames one entry (read replies and repairs). */
export function encodeOneEntry(entry: Entry): Uint8Array {
  return frameRecord(encodeEntry(entry));
}

/** Decodes one framed entry, checking length and CRC first. */
export function decodeOneEntry(type: string, bytes: Uint8Array): Entry {
  const record = readRecord(bytes, 0, RECORD_BYTES_MAX);
  if (!record.ok) fail(type, `entry: ${record.problem}`);
  if (record.next !== bytes.length) fail(type, "trailing bytes after the entry");
  try {
    const entry = decodeEntry(record.data);
    if (entry.op === "append" || entry.key === "" || entry.seq < 1) {
      fail(type, "entry is not a key version");
    }
    return entry;
  } catch (error) {
    if (error instanceof ProtocolError) throw error;
    fail(type, `entry: ${(error as Error).message}`);
  }
}

const snapEncoder = new Encoder({ useRecords: false, mapsAsObjects: true });

type Tuple = [string, Uint8Array | null, string, number, string, number, number, string];

/** Encodes snapshot records (tombstones included) as one framed chunk. */
export function encodeSnapRecords(records: readonly [string, KeyRecord][]): Uint8Array {
  const tuples: Tuple[] = records.map((
    [key, r],
  ) => [key, r.value, r.contentType, r.hlc, r.origin, r.seq, r.prevHlc, r.prevOrigin]);
  return frameRecord(snapEncoder.encode(tuples));
}

/** Decodes a snapshot chunk; every tuple is checked before any is returned. */
export function decodeSnapRecords(bytes: Uint8Array): [string, KeyRecord][] {
  const record = readRecord(bytes, 0, REPL_BATCH_BYTES_MAX + RECORD_BYTES_MAX);
  if (!record.ok) fail(MSG_SNAP, `chunk: ${record.problem}`);
  let raw: unknown;
  try {
    raw = snapEncoder.decode(record.data);
  } catch {
    fail(MSG_SNAP, "chunk is not valid CBOR");
  }
  if (!Array.isArray(raw)) fail(MSG_SNAP, "chunk is not a list");
  const out: [string, KeyRecord][] = [];
  for (const t of raw) {
    if (!Array.isArray(t) || t.length !== 8) fail(MSG_SNAP, "a tuple has the wrong shape");
    const [key, value, contentType, hlc, origin, seq, prevHlc, prevOrigin] = t;
    if (
      typeof key !== "string" || key.length === 0 ||
      !(value === null || value instanceof Uint8Array) ||
      typeof contentType !== "string" || !Number.isSafeInteger(hlc) || typeof origin !== "string" ||
      origin === "" ||
      !Number.isSafeInteger(seq) || seq < 1 || !Number.isSafeInteger(prevHlc) ||
      typeof prevOrigin !== "string"
    ) fail(MSG_SNAP, "a tuple has a field of the wrong type");
    out.push([key, {
      value: value === null ? null : new Uint8Array(value),
      contentType,
      hlc,
      origin,
      seq,
      lsn: 0,
      prevHlc,
      prevOrigin,
    }]);
  }
  return out;
}
