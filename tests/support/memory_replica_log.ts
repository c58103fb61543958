/**
 * An in-memory {@link ReplicaLog} for the seeded simulation: a log array and a real Keyspace.
 * "Durable" means the append's promise resolved; a crash drops what is not durable and keeps
 * the rest, as a real node's WAL would. As in the store, an entry is in the log (lastLsn,
 * readFramed) before the view applies it (versionVector, vectorLsn, onApply): a peer's entry
 * waits for the simulation's next step (applyDurable()), a local write a microtask (taking
 * the peers' entries before it along). Local writes mirror Store.put/delete.
 *
 * @module
 */
import {
  encodeEntry,
  type Entry,
  validateKey,
  type VersionVector,
} from "../../src/common/entry.ts";
import { frameRecord } from "../../src/storage/wal/record.ts";
import { Hlc } from "../../src/common/hlc.ts";
import type { Clock } from "../../src/common/clock.ts";
import {
  type AheadRanges,
  appliedBy,
  highestCounted,
  type KeyRecord,
  Keyspace,
  recordToEntry,
} from "../../src/storage/kv/keyspace.ts";
import {
  type EntryInput,
  LsnCompactedError,
  type ReadBuffers,
  type WrittenListener,
} from "../../src/storage/wal/wal.ts";
import type {
  CapturedSnapshot,
  FramedEntry,
  ReplicaLog,
} from "../../src/replication/replica_log.ts";
import { framed } from "../../src/replication/tail_cache.ts";
import { raisedByAhead, raiseSnapshotOnly } from "../../src/storage/kv/store.ts";

export class MemoryReplicaLog implements ReplicaLog {
  readonly nodeId: string;
  readonly origin: string;
  readonly keyspace = new Keyspace();
  readonly #hlc = new Hlc();
  readonly #clock: Clock;
  #log: Entry[] = [];
  #firstLsn = 1;
  #localSeq = 0;
  #appliedLsn = 0;
  #unapplied: { entry: Entry; applied: (lsn: number) => void }[] = [];
  #inflight = new Map<string, Promise<number | undefined>>();
  #listeners = new Set<(entry: Entry) => void>();
  #writtenListeners = new Set<WrittenListener>();
  /** Records handed to onWritten listeners that asked for them, by the entry's origin. */
  readonly recordsTaken = new Map<string, number>();
  /**
   * Local writes become durable at the simulation's next step, as peers' entries do, instead
   * of a microtask later: the window in which a shipper that ships unsynced entries
   * (ShipperOptions.mayShipUnsynced) has them out and a crash still loses them.
   */
  localDurableAtStep = false;
  #snapshotOnly: VersionVector = {};
  #installBases = new Map<string, VersionVector>();
  #transferKeys = new Map<string, Set<string>>();
  /**
   * The view the last snapshot install made durable (a real node writes it to a snapshot
   * file), with the log's last LSN then: a crash after it keeps it.
   */
  #installed:
    | { lsn: number; records: [string, KeyRecord][]; vv: VersionVector; ahead: AheadRanges }
    | undefined;
  /** Snapshot installs completed. */
  installs = 0;
  /**
   * When set, a snapshot capture (taken at the call) is handed over only once this resolves:
   * the real store's takes a few turns of the event loop, and a stream can move on meanwhile.
   */
  captureDelay?: () => Promise<void>;

  constructor(nodeId: string, clock: Clock, origin = nodeId) {
    this.nodeId = nodeId;
    this.origin = origin;
    this.#clock = clock;
  }

  firstLsn(): number {
    return this.#firstLsn;
  }

  lastLsn(): number {
    return this.#firstLsn + this.#log.length - 1;
  }

  /**
   * With `buffers`, as the WAL does: the records are views into them, overwritten by the next
   * read, so a leader that kept a record past the read it came from would ship another's bytes
   * (and its follower refuse them). Unlike the WAL's, the read fills them before it resolves:
   * an await there shifts every simulation's timing, and two tests are built on theirs.
   */
  readFramed(
    fromLsn: number,
    entriesMax: number,
    _bytesMax: number,
    buffers?: ReadBuffers,
  ): Promise<FramedEntry[]> {
    if (fromLsn < this.#firstLsn) {
      return Promise.reject(new LsnCompactedError(fromLsn, this.#firstLsn));
    }
    const start = fromLsn - this.#firstLsn;
    const entries = this.#log.slice(start, start + entriesMax);
    if (buffers === undefined) return Promise.resolve(framed(entries));
    buffers.reset();
    const records = entries.map((entry) => frameRecord(encodeEntry(entry)));
    const into = buffers.take(records.reduce((sum, r) => sum + r.length, 0));
    let at = 0;
    return Promise.resolve(entries.map((entry, i) => {
      const frame = into.subarray(at, at + records[i].length);
      frame.set(records[i]);
      at += frame.length;
      return { lsn: entry.lsn, origin: entry.origin, seq: entry.seq, frame: () => frame };
    }));
  }

  versionVector(): VersionVector {
    return this.keyspace.versionVector();
  }

  vectorSeq(origin: string): number {
    return this.keyspace.vectorSeq(origin);
  }

  hlc(): number {
    return this.#hlc.now(this.#clock.nowMs());
  }

  pendingEntries(): number {
    return this.#inflight.size;
  }

  checkRemote(entry: EntryInput): void {
    if (entry.key !== "") validateKey(entry.key);
  }

  vectorLsn(): number {
    return this.keyspace.hasGaps() ? 0 : this.#appliedLsn;
  }

  /** Appends `input` and resolves with its LSN once applied (see the module doc). */
  #append(input: EntryInput, untilStep: boolean): Promise<number> {
    const entry = this.#push(input);
    const { promise, resolve } = Promise.withResolvers<number>();
    this.#unapplied.push({ entry, applied: resolve });
    if (!untilStep) queueMicrotask(() => this.#applyThrough(entry.lsn));
    return promise;
  }

  /** The last LSN applied, which is the last durable one (a crash keeps up to here). */
  get durableLsn(): number {
    return this.#appliedLsn;
  }

  /** Every entry is written when appended (Store.writtenLsn); lastLsn counts it already. */
  writtenLsn(): number {
    return this.lastLsn();
  }

  onWritten(listener: WrittenListener): () => void {
    this.#writtenListeners.add(listener);
    return () => this.#writtenListeners.delete(listener);
  }

  /** Applies, in LSN order, every entry appended and not applied yet. */
  applyDurable(): void {
    this.#applyThrough(Infinity);
  }

  #applyThrough(lsn: number): void {
    while (this.#unapplied.length > 0 && this.#unapplied[0].entry.lsn <= lsn) {
      const { entry, applied } = this.#unapplied.shift()!;
      applied(this.#apply(entry));
    }
  }

  #push(input: EntryInput): Entry {
    const entry: Entry = { ...input, lsn: this.lastLsn() + 1 };
    this.#log.push(entry);
    this.#hlc.observe(entry.hlc);
    // The record a WAL would have written, as Store hands it over.
    for (const listener of this.#writtenListeners) {
      listener([entry], () => {
        this.recordsTaken.set(entry.origin, (this.recordsTaken.get(entry.origin) ?? 0) + 1);
        return [frameRecord(encodeEntry(entry))];
      });
    }
    return entry;
  }

  #apply(entry: Entry): number {
    // As Store: an entry a snapshot's vector counted while it waited changes no record.
    if (!this.keyspace.has(entry.origin, entry.seq)) this.keyspace.apply(entry);
    this.#appliedLsn = entry.lsn;
    for (const listener of this.#listeners) listener(entry);
    return entry.lsn;
  }

  async applyRemote(entry: EntryInput): Promise<unknown> {
    if (entry.origin === this.origin) this.raiseOwnSeq(entry.seq);
    if (this.keyspace.has(entry.origin, entry.seq)) return undefined;
    const id = `${entry.origin}:${entry.seq}`;
    // As the store: a copy queued by another stream settles this one once it is durable.
    const queued = this.#inflight.get(id);
    if (queued !== undefined) return queued.then(() => undefined);
    this.#hlc.observe(entry.hlc);
    const append = (async () => {
      await Promise.resolve(); // the "fsync"
      // A snapshot merged meanwhile may have brought it.
      const lsn = this.keyspace.has(entry.origin, entry.seq)
        ? undefined
        : await this.#append(entry, true);
      // As the store: queued until applied, so a copy arriving meanwhile is not appended again.
      this.#inflight.delete(id);
      return lsn;
    })();
    this.#inflight.set(id, append);
    return await append;
  }

  async applyRemoteBatch(entries: readonly EntryInput[]): Promise<void> {
    for (const entry of entries) this.checkRemote(entry);
    await Promise.all(entries.map((entry) => this.applyRemote(entry)));
  }

  onApply(listener: (entry: Entry) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  getVersion(key: string): KeyRecord | undefined {
    return this.keyspace.getVersion(key);
  }

  captureSnapshot(): Promise<CapturedSnapshot> {
    const captured = {
      // The LSN the view reflects, as Store.captureView takes it: entries appended and not yet
      // applied are in neither the records nor the vector, so the tail must bring them.
      lsn: this.#appliedLsn,
      versionVector: this.versionVector(),
      ahead: this.keyspace.aheadRanges(),
      hlc: this.#hlc.last,
      state: this.keyspace.capture(),
    };
    return this.captureDelay ? this.captureDelay().then(() => captured) : Promise.resolve(captured);
  }

  mergeRecords(records: readonly [string, KeyRecord][], source: string, first: boolean): void {
    if (!this.#installBases.has(source)) {
      this.#installBases.set(source, this.keyspace.versionVector());
    }
    let keys = this.#transferKeys.get(source);
    if (keys === undefined || first) this.#transferKeys.set(source, keys = new Set());
    for (const [key, r] of records) {
      keys.add(key);
      if (this.keyspace.has(r.origin, r.seq)) continue; // held: as Store.mergeRecords
      this.#hlc.observe(r.hlc);
      this.keyspace.apply({
        lsn: 0,
        origin: r.origin,
        seq: r.seq,
        hlc: r.hlc,
        op: r.value === null ? "delete" : "put",
        key,
        value: r.value,
        contentType: r.contentType,
        prevHlc: r.prevHlc,
        prevOrigin: r.prevOrigin,
      }, false); // counted at the install, as Store.mergeRecords
    }
  }

  installSnapshot(
    vv: VersionVector,
    hlc: number,
    source: string,
    ahead: AheadRanges = {},
  ): Promise<void> {
    this.#hlc.observe(hlc);
    // As Store.installSnapshot: this node's writes the sender counts are numbered past.
    this.raiseOwnSeq(highestCounted(vv, ahead, this.origin));
    // As Store.installSnapshot: keys the sender deleted (and collected) go here too. The
    // install completes in this step, so no entry lands between the pass and the vector.
    this.keyspace.beginDropDeletedBy(
      appliedBy(vv, ahead),
      this.#transferKeys.get(source) ?? new Set(),
    ).step(Infinity);
    this.#transferKeys.delete(source);
    // As Store.installSnapshot: what the transfer raised is not in this log.
    this.#snapshotOnly = raiseSnapshotOnly(
      this.#snapshotOnly,
      raisedByAhead(vv, ahead),
      source,
      this.#installBases,
      this.keyspace.versionVector(),
    );
    this.#installBases.delete(source);
    this.keyspace.mergeVersionVector(vv);
    this.keyspace.countAhead(ahead);
    this.#installed = {
      lsn: this.lastLsn(),
      records: [...this.keyspace.entries()],
      vv: this.keyspace.versionVector(),
      ahead: this.keyspace.aheadRanges(),
    };
    this.installs++;
    return Promise.resolve();
  }

  snapshotOnly(): VersionVector {
    return { ...this.#snapshotOnly };
  }

  /** At once: the simulation's tombstones are gone when this returns. */
  collectTombstones(stable: VersionVector, belowHlc: number): Promise<number> {
    return Promise.resolve(this.keyspace.collectTombstones(stable, belowHlc));
  }

  /** As Store.raiseLocalSeq. */
  raiseOwnSeq(seq: number): number | undefined {
    if (seq <= this.#localSeq) return undefined;
    const before = this.#localSeq;
    this.#localSeq = seq;
    return before;
  }

  /** A local write, as Store.put / Store.delete make it. */
  write(key: string, value: Uint8Array | null): Promise<{ seq: number }> {
    const previous = this.keyspace.getVersion(key);
    const input: EntryInput = {
      origin: this.origin,
      seq: ++this.#localSeq,
      hlc: this.#hlc.now(this.#clock.nowMs()),
      op: value === null ? "delete" : "put",
      key,
      value,
      contentType: value === null ? "" : "application/octet-stream",
      prevHlc: previous?.hlc ?? 0,
      prevOrigin: previous?.origin ?? "",
    };
    const seq = input.seq;
    return Promise.resolve().then(async () => {
      await this.#append(input, this.localDurableAtStep);
      return { seq };
    });
  }

  /**
   * The log as a restore from a backup taken at `uptoLsn` rebuilds it: the entries up to
   * there (from LSN 1: no retention), under a new `origin` as `shanghai restore` draws one,
   * plus the view of the last snapshot install at or below `uptoLsn` (what a transfer brought
   * is in no log; a transfer not installed yet is lost, as on a real node).
   */
  restoredCopy(uptoLsn: number, origin: string): MemoryReplicaLog {
    if (this.#firstLsn !== 1) throw new Error("restoredCopy needs the log from LSN 1");
    const copy = new MemoryReplicaLog(this.nodeId, this.#clock, origin);
    for (const { lsn: _lsn, ...input } of this.#log.slice(0, uptoLsn)) {
      copy.#apply(copy.#push(input));
    }
    const installed = this.#installed;
    if (installed !== undefined && installed.lsn <= uptoLsn) {
      for (const [key, record] of installed.records) {
        copy.keyspace.apply({ ...recordToEntry(key, record), lsn: 0 }, false);
      }
      copy.keyspace.mergeVersionVector(installed.vv);
      copy.keyspace.countAhead(installed.ahead);
      copy.#installed = installed;
      copy.#snapshotOnly = { ...this.#snapshotOnly };
    }
    copy.#localSeq = copy.keyspace.highestSeq(origin);
    return copy;
  }

  /** Retention: drops entries below `lsn` (peers that far behind need a snapshot). */
  compact(lsn: number): void {
    const drop = Math.min(Math.max(0, lsn - this.#firstLsn), this.#log.length);
    this.#log = this.#log.slice(drop);
    this.#firstLsn += drop;
  }
}
