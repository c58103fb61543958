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
 * | `repl.opened`   | follower -> leader | session, cursor for this leader, vv, credit, sources   |
 * | `repl.batch`    | leader -> follower | session, startLsn, fromLsn..toLsn, framed entries, held? |
 * | `repl.ack`      | follower -> leader | session, ackedLsn, vv, hlc, credit, sources?           |
 * | `repl.snap`     | leader -> follower | session, lsn, chunk index, last?, vv, ahead? (last), framed tuples |
 * | `repl.snapack`  | follower -> leader | session, chunk index                                   |
 * | `repl.read`     | any -> any         | request id, key (quorum reads)                         |
 * | `repl.readok`   | any -> any         | request id, framed entry of the key's version or null, vv? |
 * | `repl.repair`   | any -> any         | framed entry (read repair)                             |
 *
 * @module
 */
import { concatBytes } from "../common/bytes.ts";
import { Encoder } from "cbor-x";
import { decodeEntry, encodeEntry, type Entry, type VersionVector } from "../common/entry.ts";
import { InputError, ProtocolError } from "../common/errors.ts";
import {
  AHEAD_ENTRIES_MAX,
  BATCH_ENTRIES_MAX,
  KEY_BYTES_MAX,
  MEMBERS_MAX,
  ORIGIN_BYTES_MAX,
  RECORD_BYTES_MAX,
  REPL_BATCH_BYTES_MAX,
  REPL_CREDIT_ENTRIES_MAX,
  REPL_SNAP_AHEAD_RANGES_MAX,
} from "../common/limits.ts";
import { isNodeId, isOrigin } from "../common/origin.ts";
import { type AheadRanges, checkAheadRanges, type KeyRecord } from "../storage/kv/keyspace.ts";
import { frameRecord, readRecord } from "../storage/wal/record.ts";

/** Version of the replication frames; a frame of another version is refused. */
export const REPL_PROTOCOL_VERSION = 1;
/** Most origins a version vector in a frame may name (`vv`, a batch's `held`). */
export const VV_ORIGINS_MAX = 10_000;

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
  /**
   * The leader's origin, which names its log: a new one (a restore, a fresh data directory)
   * numbers LSNs anew, so the follower's cursor for the old one is void. Absent from peers
   * that predate it.
   */
  origin?: string;
  /** See {@link Succession}: the leader's log is the same up to `throughLsn`. */
  succeeds?: Succession;
}

/**
 * A node that crashed after shipping entries before their fdatasync writes under a new origin
 * (src/node/unsynced.ts), but its log is the one it had: every LSN up to `throughLsn` (its
 * last durable one at the restart) names the same entry as before; later LSNs may not. Sent
 * as `prevOrigin` and `prevThroughLsn` in open and opened frames, during the run that drew
 * the new origin.
 */
export interface Succession {
  origin: string;
  throughLsn: number;
}

export interface OpenedFrame {
  v: number;
  session: number;
  /** The follower's origin: a new one may hold less than the old one acknowledged. */
  origin?: string;
  /** Highest leader LSN the follower holds everything up to (0: unknown). */
  cursor: number;
  vv: VersionVector;
  credit: number;
  /** See {@link AckFrame.sources}. */
  sources?: string[];
  /** See {@link Succession}: what the follower acknowledged under that origin still holds. */
  succeeds?: Succession;
  /**
   * Drawn anew by each start of the follower's process (at most RUN_ID_BYTES_MAX characters):
   * a leader that sees it change knows the follower restarted, and checks that it still holds
   * all it reported (LeaderStream.takeVectorRegressions). Absent from peers that predate it.
   */
  run?: string;
}

/** What the `ahead` of a snapshot's last chunk may hold at most (SnapFrame.ahead). */
export const SNAP_AHEAD_BOUNDS = {
  rangesMax: REPL_SNAP_AHEAD_RANGES_MAX,
  entriesMax: AHEAD_ENTRIES_MAX,
} as const;

/** Longest `run` of an opened frame. */
export const RUN_ID_BYTES_MAX = 32;

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
  /**
   * Relays the leader held back from this batch because their origin ships them to the
   * follower itself: origin -> highest sequence held back (absent when none). The follower's
   * cursor passes them though it does not hold them (see FollowerStream.resumeCursor).
   */
  held?: VersionVector;
}

export interface AckFrame {
  v: number;
  session: number;
  ackedLsn: number;
  vv: VersionVector;
  /** The follower's HLC when it sent the ack: its own later writes are above it. */
  hlc: number;
  credit: number;
  /**
   * The peers that stream their own log to the follower now (each opened a session it
   * accepted, and the link has not gone down since): a leader holds back relays of a peer's
   * entries only while that peer is among them. Sent in status acks (at the next tick after
   * it changes), left out of a batch's ack, absent from peers that predate it.
   */
  sources?: string[];
}

export interface SnapFrame {
  v: number;
  session: number;
  /** Leader LSN the snapshot state is at; the tail follows from lsn + 1. */
  lsn: number;
  index: number;
  last: boolean;
  vv: VersionVector;
  /**
   * In the last chunk: the entries the sender held above a gap in their origin's sequence when
   * it took the copy (Keyspace.aheadRanges), which `vv` leaves out while the records hold them.
   * The follower counts them at the install, as it counts `vv`; without them, an entry whose
   * origin is gone was never counted there. At most REPL_SNAP_AHEAD_RANGES_MAX ranges; absent
   * when there are none and from peers that predate it.
   */
  ahead?: AheadRanges;
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
  /**
   * With a null record: the replier's version vector. A newer reply whose write it covers was
   * applied there and deleted since, its tombstone collected (Shipper.readQuorum).
   */
  vv?: VersionVector;
}

export interface RepairFrame {
  v: number;
  record: Uint8Array;
}

function fail(type: string, reason: string): never {
  throw new ProtocolError(`Cannot accept ${type} frame: ${reason}`);
}

/**
 * A frame body whose map shape and protocol version are checked, with one checked read per field
 * kind. Every failure is a {@link ProtocolError} naming the frame type, so each `parse*` function
 * below only lists its fields, in the order they are checked.
 */
class FrameBody {
  readonly #type: string;
  readonly #fields: Record<string, unknown>;

  constructor(type: string, body: unknown) {
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      fail(type, "body is not a map");
    }
    const fields = body as Record<string, unknown>;
    if (fields.v !== REPL_PROTOCOL_VERSION) {
      fail(type, `protocol version ${JSON.stringify(fields.v)}, expected ${REPL_PROTOCOL_VERSION}`);
    }
    this.#type = type;
    this.#fields = fields;
  }

  /** The raw value of `field`, for checks particular to one frame. */
  get(field: string): unknown {
    return this.#fields[field];
  }

  /** Refuses the frame for a reason only its parse function checks. */
  fail(reason: string): never {
    fail(this.#type, reason);
  }

  /** A whole number from 0 to `max`. */
  count(field: string, max = Number.MAX_SAFE_INTEGER): number {
    const value = this.#fields[field];
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0 || value > max) {
      this.fail(`${field} is not a whole number from 0 to ${max}`);
    }
    return value;
  }

  /** `true` or `false`. */
  boolean(field: string): boolean {
    const value = this.#fields[field];
    if (typeof value !== "boolean") this.fail(`${field} is not a boolean`);
    return value;
  }

  /** A byte string of at most `max` bytes. */
  bytes(field: string, max: number): Uint8Array {
    const value = this.#fields[field];
    if (!(value instanceof Uint8Array)) this.fail(`${field} is not bytes`);
    if (value.length > max) {
      this.fail(`${field} is ${value.length} bytes, over the limit of ${max}`);
    }
    return value;
  }

  /** The optional `origin` field: the sender's origin (src/common/origin.ts). */
  origin(field = "origin"): string | undefined {
    const value = this.#fields[field];
    if (value === undefined) return undefined;
    if (!isOrigin(value)) this.fail(`${field} is malformed`);
    return value;
  }

  /** A non-empty string of at most `max` characters. */
  text(field: string, max: number): string {
    const value = this.#fields[field];
    if (typeof value !== "string" || value.length === 0 || value.length > max) {
      this.fail(`${field} is not a string of 1 to ${max} characters`);
    }
    return value;
  }

  /** The optional `prevOrigin` and `prevThroughLsn` pair ({@link Succession}), as a field. */
  succeeds(): { succeeds?: Succession } {
    const origin = this.origin("prevOrigin");
    if (origin === undefined) {
      if (this.#fields.prevThroughLsn !== undefined) this.fail("prevThroughLsn without prevOrigin");
      return {};
    }
    return { succeeds: { origin, throughLsn: this.count("prevThroughLsn") } };
  }

  /** An optional list of at most MEMBERS_MAX node ids. */
  nodeIds(field: string): string[] | undefined {
    const value = this.#fields[field];
    if (value === undefined) return undefined;
    if (!Array.isArray(value)) this.fail(`${field} is not a list`);
    if (value.length > MEMBERS_MAX) {
      this.fail(`${field} names ${value.length} nodes, over the limit of ${MEMBERS_MAX}`);
    }
    if (!value.every(isNodeId)) this.fail(`${field} holds a malformed node id`);
    return value;
  }

  /** The `vv` field (or another of the same shape): origin -> highest sequence, bounded. */
  versionVector(field = "vv"): VersionVector {
    const value = this.#fields[field];
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      this.fail(`${field} is not a map`);
    }
    const out: VersionVector = {};
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.length > VV_ORIGINS_MAX) this.fail(`${field} names too many origins`);
    for (const [origin, seq] of entries) {
      if (
        origin.length === 0 || origin.length > ORIGIN_BYTES_MAX || typeof seq !== "number" ||
        !Number.isSafeInteger(seq) || seq < 0
      ) {
        this.fail(`${field} entry ${JSON.stringify(origin)} is malformed`);
      }
      out[origin] = seq;
    }
    return out;
  }

  /** Entries held above a gap, within SNAP_AHEAD_BOUNDS (see checkAheadRanges). */
  aheadRanges(field: string): AheadRanges {
    const ahead = checkAheadRanges(this.#fields[field], SNAP_AHEAD_BOUNDS);
    if (typeof ahead === "string") this.fail(`${field} ${ahead}`);
    return ahead;
  }
}

export function parseOpen(body: unknown): OpenFrame {
  const b = new FrameBody(MSG_OPEN, body);
  return {
    v: REPL_PROTOCOL_VERSION,
    session: b.count("session"),
    firstLsn: b.count("firstLsn"),
    lastLsn: b.count("lastLsn"),
    origin: b.origin(),
    ...b.succeeds(),
  };
}

export function parseOpened(body: unknown): OpenedFrame {
  const b = new FrameBody(MSG_OPENED, body);
  return {
    v: REPL_PROTOCOL_VERSION,
    session: b.count("session"),
    cursor: b.count("cursor"),
    vv: b.versionVector(),
    credit: b.count("credit", REPL_CREDIT_ENTRIES_MAX),
    origin: b.origin(),
    sources: b.nodeIds("sources"),
    ...b.succeeds(),
    ...(b.get("run") === undefined ? {} : { run: b.text("run", RUN_ID_BYTES_MAX) }),
  };
}

export function parseAck(body: unknown): AckFrame {
  const b = new FrameBody(MSG_ACK, body);
  return {
    v: REPL_PROTOCOL_VERSION,
    session: b.count("session"),
    ackedLsn: b.count("ackedLsn"),
    vv: b.versionVector(),
    hlc: b.count("hlc"),
    credit: b.count("credit", REPL_CREDIT_ENTRIES_MAX),
    sources: b.nodeIds("sources"),
  };
}

/** Checks a batch's header; its entries are checked by {@link decodeBatchEntries}. */
export function parseBatch(body: unknown): BatchFrame {
  const b = new FrameBody(MSG_BATCH, body);
  const frame: BatchFrame = {
    v: REPL_PROTOCOL_VERSION,
    session: b.count("session"),
    startLsn: b.count("startLsn"),
    fromLsn: b.count("fromLsn"),
    toLsn: b.count("toLsn"),
    count: b.count("count", BATCH_ENTRIES_MAX),
    records: b.bytes("records", REPL_BATCH_BYTES_MAX + RECORD_BYTES_MAX),
    lastLsn: b.get("lastLsn") === undefined ? 0 : b.count("lastLsn"),
    ...(b.get("held") === undefined ? {} : { held: b.versionVector("held") }),
  };
  if (frame.fromLsn < 1 || frame.toLsn < frame.fromLsn) {
    b.fail(`range ${frame.fromLsn}..${frame.toLsn} is empty or reversed`);
  }
  if (frame.count > frame.toLsn - frame.fromLsn + 1) {
    b.fail(`${frame.count} entries do not fit in ${frame.fromLsn}..${frame.toLsn}`);
  }
  return frame;
}

/**
 * Decodes a batch's entries, checking each frame's length and CRC, each entry's fields, and
 * that LSNs rise strictly inside fromLsn..toLsn. All or nothing: one bad entry refuses the batch.
 *
 * Values are views into `records` (the frame's payload, which nothing writes to once it is
 * decoded), not copies: the key-value view keeps them there and copies out the survivors of a
 * buffer that is mostly overwritten (Keyspace's shared buffers).
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
      entry = decodeEntry(record.data, { shareValue: true });
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
  const b = new FrameBody(MSG_SNAP, body);
  const last = b.boolean("last");
  return {
    v: REPL_PROTOCOL_VERSION,
    session: b.count("session"),
    lsn: b.count("lsn"),
    index: b.count("index"),
    last,
    vv: b.versionVector(),
    ...(b.get("ahead") === undefined ? {} : { ahead: b.aheadRanges("ahead") }),
    records: b.bytes("records", REPL_BATCH_BYTES_MAX + RECORD_BYTES_MAX),
  };
}

export function parseSnapAck(body: unknown): SnapAckFrame {
  const b = new FrameBody(MSG_SNAPACK, body);
  return { v: REPL_PROTOCOL_VERSION, session: b.count("session"), index: b.count("index") };
}

export function parseRead(body: unknown): ReadFrame {
  const b = new FrameBody(MSG_READ, body);
  const key = b.get("key");
  if (typeof key !== "string" || key.length === 0 || key.length > KEY_BYTES_MAX) {
    fail(MSG_READ, "key is malformed");
  }
  return { v: REPL_PROTOCOL_VERSION, id: b.count("id"), key };
}

export function parseReadOk(body: unknown): ReadOkFrame {
  const b = new FrameBody(MSG_READOK, body);
  const record = b.get("record") === null ? null : b.bytes("record", RECORD_BYTES_MAX + 8);
  return {
    v: REPL_PROTOCOL_VERSION,
    id: b.count("id"),
    record,
    ...(b.get("vv") === undefined ? {} : { vv: b.versionVector("vv") }),
  };
}

export function parseRepair(body: unknown): RepairFrame {
  const b = new FrameBody(MSG_REPAIR, body);
  return { v: REPL_PROTOCOL_VERSION, record: b.bytes("record", RECORD_BYTES_MAX + 8) };
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
      origin === "" || origin.length > ORIGIN_BYTES_MAX ||
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
