/**
 * What replication needs from local storage, as one narrow interface: the shipper runs over
 * the real {@link Store} (storeReplicaLog) in a node and over an in-memory log in the seeded
 * simulation (tests/support/memory_replica_log.ts), so both exercise the same shell code.
 *
 * @module
 */
import type { Entry, VersionVector } from "../common/entry.ts";
import type { AheadRanges, KeyRecord, KeyspaceCapture } from "../storage/kv/keyspace.ts";
import type { LeaderCursor } from "../storage/kv/snapshot.ts";
import type { Store } from "../storage/kv/store.ts";
import type { EntryInput, ReadBuffers, WrittenListener } from "../storage/wal/wal.ts";

/** A point-in-time copy of the key-value view for a snapshot transfer. */
export interface CapturedSnapshot {
  /** The local LSN the copy is at. */
  lsn: number;
  versionVector: VersionVector;
  /** Entries held above a gap, which `versionVector` leaves out (Keyspace.aheadRanges). */
  ahead?: AheadRanges;
  hlc: number;
  /**
   * Tombstones included, as two parallel arrays (see Keyspace.capture). Records are shared,
   * not copied: the view never mutates them.
   */
  state: KeyspaceCapture;
}

/**
 * An entry as a leader ships it: the fields it filters on (what the follower holds by origin
 * and sequence) and the framed record a batch carries (`length | CRC | entry`).
 */
export interface FramedEntry {
  lsn: number;
  origin: string;
  seq: number;
  frame(): Uint8Array;
}

export interface ReplicaLog {
  readonly nodeId: string;
  /** The origin this node's writes carry (src/common/origin.ts). */
  readonly origin: string;
  firstLsn(): number;
  /** The last durable LSN; readFramed serves up to here. */
  lastLsn(): number;
  /**
   * An LSN through which versionVector() counts every entry of the log, so a peer whose vector
   * covers it holds them all: the last applied LSN (a durable entry is applied a moment after
   * lastLsn counts it), or 0 while an applied entry sits above a gap in its origin's sequence
   * (the dense vector does not count it).
   */
  vectorLsn(): number;
  /**
   * Durable entries from `fromLsn` as records to ship; throws LsnCompactedError below the
   * first retained LSN. With `buffers`, the records may be views into them, valid until
   * their next read.
   */
  readFramed(
    fromLsn: number,
    entriesMax: number,
    bytesMax: number,
    buffers?: ReadBuffers,
  ): Promise<FramedEntry[]>;
  versionVector(): VersionVector;
  /**
   * `versionVector()[origin]` (0 when absent) without copying the vector: every ack a leader
   * receives checks each write waiting for copies against it.
   */
  vectorSeq(origin: string): number;
  /**
   * A clock reading that every later local write is above: advances the HLC to the wall
   * clock (tombstone collection relies on it, so it is never just the last write's HLC).
   */
  hlc(): number;
  /** Entries queued behind the disk (the follower grants less credit while there are many). */
  pendingEntries(): number;
  /** Throws InputError when a peer's entry would be refused by applyRemote. */
  checkRemote(entry: EntryInput): void;
  /** Appends a peer's entry unless it is held; resolves once durable. */
  applyRemote(entry: EntryInput): Promise<unknown>;
  /**
   * Appends a peer's batch in order, each entry as applyRemote would; checks every entry
   * first and queues none when one is refused; resolves once all are durable.
   */
  applyRemoteBatch(entries: readonly EntryInput[]): Promise<unknown>;
  /** Every applied (durable) entry, in LSN order. */
  onApply(listener: (entry: Entry) => void): () => void;
  /**
   * Logs whose entries can be shipped before they are durable (see Store.onWritten) have
   * both of these: the newest LSN written, and each written batch before its sync (the
   * listener answers true when the log should let queued microtasks run before syncing).
   */
  writtenLsn?(): number;
  onWritten?(listener: WrittenListener): () => void;
  getVersion(key: string): KeyRecord | undefined;
  /**
   * A copy of the view as of the call (its LSN, vector and HLC read at once), which may take
   * a few turns of the event loop to complete while writes go on.
   */
  captureSnapshot(): Promise<CapturedSnapshot>;
  /**
   * Merges a chunk of the snapshot `source` (the sending peer) is transferring; `first` for
   * the transfer's first chunk (a new transfer from `source` starts over).
   */
  mergeRecords(records: readonly [string, KeyRecord][], source: string, first: boolean): void;
  /**
   * Completes the transfer from `source`, counting what its vector and `ahead` name; resolves
   * once the installed state is durable.
   */
  installSnapshot(
    versionVector: VersionVector,
    hlc: number,
    source: string,
    ahead?: AheadRanges,
  ): Promise<void>;
  /**
   * Entries held only because an installed snapshot brought them (per origin, the highest
   * such sequence): the log cannot serve them, so a peer lacking any gets a snapshot.
   */
  snapshotOnly(): VersionVector;
  /** Keyspace.collectTombstones; a node's store takes it in steps (Store.collectTombstones). */
  collectTombstones(stable: VersionVector, belowHlc: number): Promise<number>;
  /**
   * Numbers the next local write above `seq` unless it would be already (Store.raiseLocalSeq):
   * a peer holds this node's origin up to `seq`. Returns the last number used before when it
   * raised it, undefined when nothing changed.
   */
  raiseOwnSeq(seq: number): number | undefined;
  /** Replication cursors the loaded snapshot kept, by leader (none: every stream from 0). */
  followerCursors?(): Record<string, LeaderCursor>;
}

/** The real store as a replica log. */
export function storeReplicaLog(store: Store): ReplicaLog {
  return {
    nodeId: store.nodeId,
    origin: store.origin,
    firstLsn: () => store.wal.firstLsn,
    lastLsn: () => store.lastLsn,
    vectorLsn: () => store.keyspace.hasGaps() ? 0 : store.appliedLsn,
    readFramed: async (fromLsn, entriesMax, bytesMax, buffers) =>
      (await store.wal.readFramed(fromLsn, { limit: entriesMax, bytesMax, buffers })).map((r) => ({
        lsn: r.lsn,
        origin: r.origin,
        seq: r.seq,
        frame: () => r.frame,
      })),
    versionVector: () => store.versionVector(),
    vectorSeq: (origin) => store.keyspace.vectorSeq(origin),
    hlc: () => store.hlcNow(),
    pendingEntries: () => store.wal.pendingEntries,
    checkRemote: (entry) => store.checkRemote(entry),
    applyRemote: (entry) => store.applyRemote(entry),
    applyRemoteBatch: (entries) => store.applyRemoteBatch(entries),
    onApply: (listener) => store.onApply((entry) => listener(entry)),
    writtenLsn: () => store.writtenLsn,
    onWritten: (listener) => store.onWritten(listener),
    getVersion: (key) => store.keyspace.getVersion(key),
    captureSnapshot: () => store.captureView(),
    mergeRecords: (records, source, first) => store.mergeRecords(records, source, first),
    installSnapshot: (vv, hlc, source, ahead) => store.installSnapshot(vv, hlc, source, ahead),
    snapshotOnly: () => store.snapshotOnly(),
    collectTombstones: (stable, belowHlc) => store.collectTombstones(stable, belowHlc),
    raiseOwnSeq: (seq) => store.raiseLocalSeq(seq),
    followerCursors: () => store.followerCursors(),
  };
}
