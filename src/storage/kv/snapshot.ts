/**
 * Snapshots of the key-value view. A file `snapshots/<lsn:20>.snap` holds framed records
 * (the WAL's framing: length, CRC-32, CBOR data):
 *
 * 1. a header `{ magic: "SHSNAP", format, lsn, createdMs, nodeId, versionVector, hlc, keys }`;
 * 2. chunks of at most SNAPSHOT_CHUNK_KEYS key tuples;
 * 3. a trailer `{ end: true, keys }`, so a file cut short never loads as complete.
 *
 * Written to a temporary name, fsynced, renamed, and the directory fsynced: a crash leaves
 * either the old set of snapshots or the new one, never a half file under a final name.
 *
 * @module
 */
import { Encoder } from "cbor-x";
import { internString, type VersionVector } from "../../common/entry.ts";
import { ShanghaiError } from "../../common/errors.ts";
import { KiB, MiB, RECORD_BYTES_MAX, SNAPSHOT_SYNC_EVERY_BYTES } from "../../common/limits.ts";
import { readWholeFile, writeAll, writeFileAtomicWith } from "../durable_fs.ts";
import { frameRecord, readRecord } from "../wal/record.ts";
import {
  type AheadRanges,
  checkAheadRanges,
  type KeyRecord,
  type KeyspaceCapture,
} from "./keyspace.ts";

const SNAPSHOT_MAGIC = "SHSNAP";
const SNAPSHOT_FORMAT = 1;
/**
 * A chunk closes at this many keys or value bytes, whichever comes first. Each chunk is encoded
 * and checksummed in one synchronous step: chunks of 1,000 1 KiB values held the event loop for
 * about 8 ms each; a quarter of that is about 2 ms. (Readers take any chunk size up to
 * SNAPSHOT_RECORD_BYTES_MAX, so files written with larger chunks still load.)
 */
const SNAPSHOT_CHUNK_KEYS = 250;
const SNAPSHOT_CHUNK_BYTES = 256 * KiB;
/** The largest chunk record a reader accepts: what chunks of the first format could reach. */
const SNAPSHOT_RECORD_BYTES_MAX = 4 * MiB + RECORD_BYTES_MAX;
const encoder = new Encoder({ useRecords: false, mapsAsObjects: true });

export interface SnapshotMeta {
  lsn: number;
  createdMs: number;
  nodeId: string;
  versionVector: VersionVector;
  hlc: number;
  keys: number;
  /**
   * Entries this node holds only through snapshots installed from peers (per origin, the
   * highest such sequence): its WAL never had them, so it cannot stream them to a peer.
   * Absent in files written before it existed (read as {}).
   */
  snapshotOnly?: VersionVector;
  /**
   * Entries applied above a gap in their origin's sequence, so not in `versionVector` (see
   * Keyspace.aheadRanges): their records are in the file. Absent when there are none, and in
   * files written before it existed (read as {}).
   */
  ahead?: AheadRanges;
  /**
   * The LSN of the snapshot install that first brought snapshot-only entries: the state at an
   * LSN below it is the WAL's alone, at or above it is not in the WAL (a restore that replays
   * the WAL from LSN 1 may only cut below it). Absent when `snapshotOnly` is empty, and in files
   * written before it existed (then unknown: no cut below this snapshot replays safely).
   */
  installLsn?: number;
  /**
   * How far this node held each peer's log when the snapshot was taken (replication cursors,
   * src/replication/follower.ts), so streams resume there after a restart instead of from LSN
   * 1. Valid only for the data directory of `origin`: a restored directory has a new origin
   * and ignores them. Absent in files written before it existed.
   */
  followerCursors?: FollowerCursors;
}

/** One leader's replication cursor: every entry of its log up to `cursor` is held here. */
export interface LeaderCursor {
  /** The leader's origin when the cursor was taken: a leader with another numbers anew. */
  origin?: string;
  cursor: number;
}

/** Replication cursors by leader node id, as taken by the data directory of `origin`. */
export interface FollowerCursors {
  origin: string;
  leaders: Record<string, LeaderCursor>;
}

export interface Snapshot extends SnapshotMeta {
  records: [string, KeyRecord][];
}

/**
 * `<lsn>.snap`, or `<lsn>-<generation>.snap` for a later copy at the same LSN (a snapshot
 * install writes two, so the fallback holds the installed state too).
 */
export function snapshotFileName(lsn: number, generation = 0): string {
  const base = String(lsn).padStart(20, "0");
  return generation === 0 ? `${base}.snap` : `${base}-${generation}.snap`;
}

export function parseSnapshotFileName(
  name: string,
): { lsn: number; generation: number } | undefined {
  const match = /^(\d{20})(?:-(\d{1,9}))?\.snap$/.exec(name);
  return match ? { lsn: Number(match[1]), generation: Number(match[2] ?? 0) } : undefined;
}

type Tuple = [string, Uint8Array | null, string, number, string, number, number, number, string];

function toTuple(key: string, r: KeyRecord): Tuple {
  return [key, r.value, r.contentType, r.hlc, r.origin, r.seq, r.lsn, r.prevHlc, r.prevOrigin];
}

function fromTuple(t: Tuple): [string, KeyRecord] {
  const [key, value, contentType, hlc, origin, seq, lsn, prevHlc, prevOrigin] = t;
  return [key, {
    value: value === null ? null : new Uint8Array(value),
    // Shared, not one decoded copy per record: a few content types and origins recur.
    contentType: internString(contentType),
    hlc,
    origin: internString(origin),
    seq,
    lsn,
    prevHlc,
    prevOrigin: internString(prevOrigin),
  }];
}

/**
 * Writes a snapshot durably into `dir`; returns its path and size. A file of the same LSN and
 * `generation` is replaced.
 */
export async function writeSnapshot(
  dir: string,
  meta: Omit<SnapshotMeta, "keys">,
  state: KeyspaceCapture,
  generation = 0,
): Promise<{ path: string; bytes: number }> {
  const { keys, records } = state;
  await Deno.mkdir(dir, { recursive: true });
  const path = `${dir}/${snapshotFileName(meta.lsn, generation)}`;
  let bytes = 0;
  await writeFileAtomicWith(path, async (file) => {
    let unsynced = 0;
    const put = async (value: unknown) => {
      const frame = frameRecord(encoder.encode(value));
      bytes += frame.length;
      await writeAll(file, frame);
      unsynced += frame.length;
      if (unsynced >= SNAPSHOT_SYNC_EVERY_BYTES) {
        await file.syncData();
        unsynced = 0;
      }
    };
    await put({ magic: SNAPSHOT_MAGIC, format: SNAPSHOT_FORMAT, ...meta, keys: keys.length });
    let chunk: Tuple[] = [];
    let chunkBytes = 0;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i];
      const record = records[i];
      chunk.push(toTuple(key, record));
      chunkBytes += key.length + (record.value?.length ?? 0);
      if (chunk.length >= SNAPSHOT_CHUNK_KEYS || chunkBytes >= SNAPSHOT_CHUNK_BYTES) {
        await put(chunk);
        chunk = [];
        chunkBytes = 0;
      }
    }
    if (chunk.length > 0) await put(chunk);
    await put({ end: true, keys: keys.length });
  });
  return { path, bytes };
}

export class SnapshotError extends ShanghaiError {
  override name = "SnapshotError";
  constructor(readonly path: string, reason: string) {
    super("corrupt", `Cannot load snapshot "${path}": ${reason}`);
  }
}

/**
 * Reads and fully checks a snapshot file, on this thread (see readWholeFile). Throws
 * {@link SnapshotError} on any damage.
 */
export function readSnapshot(path: string): Snapshot {
  const bytes = readWholeFile(path);
  let offset = 0;
  const next = (): unknown => {
    const record = readRecord(bytes, offset, SNAPSHOT_RECORD_BYTES_MAX);
    if (!record.ok) throw new SnapshotError(path, `${record.problem} at byte ${offset}`);
    offset = record.next;
    try {
      return encoder.decode(record.data);
    } catch {
      throw new SnapshotError(path, `undecodable record at byte ${offset}`);
    }
  };
  const header = next() as SnapshotMeta & { magic?: string; format?: number };
  if (header?.magic !== SNAPSHOT_MAGIC || header.format !== SNAPSHOT_FORMAT) {
    throw new SnapshotError(path, "not a snapshot of a known format");
  }
  const records: [string, KeyRecord][] = [];
  while (true) {
    const item = next();
    if (Array.isArray(item)) {
      for (const tuple of item as Tuple[]) records.push(fromTuple(tuple));
      continue;
    }
    const trailer = item as { end?: boolean; keys?: number };
    if (
      trailer?.end !== true || trailer.keys !== records.length || records.length !== header.keys
    ) {
      throw new SnapshotError(path, "the trailer does not match the records");
    }
    break;
  }
  if (offset !== bytes.length) {
    throw new SnapshotError(path, `unexpected bytes after the trailer at ${offset}`);
  }
  const followerCursors = parseFollowerCursors(header.followerCursors);
  const ahead = parseAhead(path, header.ahead);
  return {
    lsn: header.lsn,
    createdMs: header.createdMs,
    nodeId: header.nodeId,
    versionVector: header.versionVector ?? {},
    hlc: header.hlc,
    keys: header.keys,
    snapshotOnly: header.snapshotOnly ?? {},
    ...(ahead !== undefined ? { ahead } : {}),
    ...(header.installLsn !== undefined ? { installLsn: header.installLsn } : {}),
    ...(followerCursors !== undefined ? { followerCursors } : {}),
    records,
  };
}

/**
 * A header's `ahead`, checked: sorted disjoint ranges of positive sequence numbers. Unlike the
 * cursors it cannot be dropped: without it the vector forgets entries the records hold. Nor is
 * it bounded: it names what the node held in memory when it wrote the file (a peer's transfer
 * is bounded, AHEAD_ENTRIES_MAX), and a file the node wrote must load.
 */
function parseAhead(path: string, value: unknown): AheadRanges | undefined {
  if (value === undefined) return undefined;
  const ahead = checkAheadRanges(value);
  if (typeof ahead === "string") throw new SnapshotError(path, `its header's ahead ${ahead}`);
  return ahead;
}

/**
 * The cursors of a snapshot header, or undefined when absent or not of the written shape.
 * They only spare a peer's resend, so a header that fails here loads without them.
 */
export function parseFollowerCursors(value: unknown): FollowerCursors | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { origin, leaders } = value as { origin?: unknown; leaders?: unknown };
  if (typeof origin !== "string" || typeof leaders !== "object" || leaders === null) {
    return undefined;
  }
  const out: Record<string, LeaderCursor> = {};
  for (const [leader, entry] of Object.entries(leaders)) {
    const { origin: leaderOrigin, cursor } = (entry ?? {}) as {
      origin?: unknown;
      cursor?: unknown;
    };
    if (!Number.isSafeInteger(cursor) || (cursor as number) < 0) return undefined;
    if (leaderOrigin !== undefined && typeof leaderOrigin !== "string") return undefined;
    out[leader] = {
      ...(leaderOrigin === undefined ? {} : { origin: leaderOrigin }),
      cursor: cursor as number,
    };
  }
  return { origin, leaders: out };
}

/** Snapshot files in `dir`, newest first (by LSN, then generation). */
export async function listSnapshots(
  dir: string,
): Promise<{ lsn: number; generation: number; path: string }[]> {
  const out: { lsn: number; generation: number; path: string }[] = [];
  try {
    for await (const item of Deno.readDir(dir)) {
      const parsed = item.isFile ? parseSnapshotFileName(item.name) : undefined;
      if (parsed !== undefined) out.push({ ...parsed, path: `${dir}/${item.name}` });
      else if (item.isFile && item.name.includes(".snap.tmp-")) {
        // A temp file left by a crash mid-write: never complete, safe to drop.
        await Deno.remove(`${dir}/${item.name}`).catch(() => {});
      }
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return out.sort((a, b) => b.lsn - a.lsn || b.generation - a.generation);
}
