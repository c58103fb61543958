/**
 * The store: a WAL, the key-value view materialized from it, and snapshots that bound how
 * much of the WAL a restart replays. Every write is acknowledged only after its entry is
 * fsynced, and is visible to reads from that moment on (the view applies durable batches,
 * in LSN order, before their writers are answered).
 *
 * Recovery: load the newest snapshot that checks out whole, open the WAL (verifying every
 * segment that holds entries after the snapshot, truncating a torn tail), replay those
 * entries into the view.
 *
 * @module
 */
import { runInSteps } from "../../common/event_loop.ts";
import { invariant } from "../../common/invariant.ts";
import { type Clock, systemClock } from "../../common/clock.ts";
import type { Entry, VersionVector } from "../../common/entry.ts";
import { validateKey } from "../../common/entry.ts";
import {
  CorruptionError,
  InputError,
  OverloadedError,
  TooLargeError,
} from "../../common/errors.ts";
import { Hlc, hlcWallMs } from "../../common/hlc.ts";
import {
  INSTALL_PASS_STEP_KEYS,
  ORIGIN_BYTES_MAX,
  PENDING_BYTES_MAX,
  PENDING_ENTRIES_MAX,
  READ_ENTRIES_MAX,
  RETAIN_BYTES_DEFAULT,
  SNAPSHOT_CAPTURE_STEP_KEYS,
  SNAPSHOT_EVERY_BYTES_DEFAULT,
  SNAPSHOT_WAL_PERCENT_DEFAULT,
  TOMBSTONE_SWEEP_STEP_KEYS,
  VALUE_BYTES_DEFAULT,
} from "../../common/limits.ts";
import { EventBus } from "../../telemetry/events.ts";
import { type Logger, silentLogger } from "../../telemetry/log.ts";
import {
  type BatchInfo,
  type EntryInput,
  type SegmentInfo,
  Wal,
  type WrittenListener,
} from "../wal/wal.ts";
import {
  type AheadRanges,
  type AppliedBy,
  appliedBy,
  type ApplyResult,
  type ConflictResolver,
  highestCounted,
  type KeyRecord,
  Keyspace,
  type KeyspaceCapture,
  type KeyspaceCaptureInProgress,
  mergeAheadRanges,
  recordToEntry,
  SORT_AT_ONCE_KEYS_MAX,
} from "./keyspace.ts";
import {
  type LeaderCursor,
  listSnapshots,
  readSnapshot,
  SnapshotError,
  writeSnapshot,
} from "./snapshot.ts";

/** Steps of {@link Store.sortKeysInSteps} at most (some 10 s): 300,000 new keys take about 300. */
const SORT_STEPS_MAX = 10_000;
/** A snapshot install between its pass over the view and its vector counting. */
interface InstallUnderWay {
  /** The entries the snapshot stands for: its vector and the sender's entries above a gap. */
  applied: AppliedBy;
  /** Every key the transfer carried. */
  keys: ReadonlySet<string>;
}

/** What apply listeners get for an entry the view held already: no record changed. */
const DUPLICATE: ApplyResult = Object.freeze({ applied: false, concurrent: false });

export interface StoreOptions {
  /** Data directory: snapshots live in `<dataDir>/snapshots`. */
  dataDir: string;
  /** WAL directory; defaults to `<dataDir>/wal`. */
  walDir?: string;
  nodeId: string;
  /**
   * The origin this node's writes carry (src/common/origin.ts); the node id when absent. Its
   * sequence numbers continue from the highest this store holds.
   */
  origin?: string;
  /**
   * Origins this directory's log wrote under before `origin` (Identity.priorOrigins): a crash
   * changed the origin, not the log, so a snapshot taken under one of them still holds valid
   * replication cursors (a restore clears the list).
   */
  priorOrigins?: readonly string[];
  valueBytesMax?: number;
  segmentBytesMax?: number;
  batchEntriesMax?: number;
  /** How far peers' entries may fill a WAL batch (see WalOptions). */
  replicatedBatchEntriesMax?: number;
  batchBytesMax?: number;
  /** Zeros laid out ahead of the WAL's last record (see WalOptions.preallocateBytes). */
  preallocateBytes?: number;
  /** fdatasync on the JavaScript thread (see WalOptions.inlineSync). */
  inlineSync?: boolean;
  /** Called right before each WAL batch's fdatasync (see WalOptions.beforeSync). */
  beforeSync?: () => void;
  /** Writers expected back soon, whom a short batch may wait for (see WalOptions.expectedWriters). */
  expectedWriters?: () => number;
  /** The longest such wait, in µs (see WalOptions.gatherMicros). */
  gatherMicros?: number;
  /** Synced WAL bytes kept in the OS page cache (see WalOptions.dropBehindBytes; 0: all). */
  dropBehindBytes?: number;
  /** Take a snapshot after this many WAL bytes since the last one. 0 disables it. */
  snapshotEveryBytes?: number;
  /**
   * An automatic snapshot also waits until the WAL since the last one reaches this percentage
   * of that snapshot's size (SNAPSHOT_WAL_PERCENT_DEFAULT; 0: snapshotEveryBytes alone).
   */
  snapshotWalPercent?: number;
  /** Records a snapshot copies per turn of the event loop (SNAPSHOT_CAPTURE_STEP_KEYS). */
  snapshotCaptureStepKeys?: number;
  /** WAL bytes kept behind the newest snapshot, for peers catching up. */
  retainBytes?: number;
  /** Lowest LSN some peer still needs; retention keeps it unless it is past retainBytes. */
  retentionHoldLsn?: () => number | undefined;
  /**
   * Replication cursors to keep in each snapshot (taken with its records, in one synchronous
   * step), so a restart resumes peers' streams where they were. See followerCursors().
   */
  followerCursors?: () => Record<string, LeaderCursor> | undefined;
  resolver?: ConflictResolver;
  clock?: Clock;
  events?: EventBus;
  logger?: Logger;
}

export interface WriteResult {
  lsn: number;
  origin: string;
  seq: number;
  hlc: number;
}

/** Called for each entry applied to the view, in LSN order (change feeds, replication). */
export type ApplyListener = (entry: Entry, result: ApplyResult) => void;

export class Store {
  readonly nodeId: string;
  readonly origin: string;
  readonly dataDir: string;
  readonly valueBytesMax: number;
  readonly events: EventBus;
  readonly keyspace: Keyspace;
  readonly hlc = new Hlc();
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #options: StoreOptions;
  #wal!: Wal;
  // Invariant: localSeq >= versionVector[origin]; sequence numbers are never reused.
  #localSeq = 0;
  // While set, local writes wait for it before they are numbered (holdLocalWrites); the held
  // ones count against the WAL queue's bounds, which they join once it settles.
  #localHold: Promise<void> | undefined;
  #heldWrites = { entries: 0, bytes: 0 };
  // Peers' entries queued in the WAL and not yet durable, by origin then seq: their appends.
  // (Keyed without building an `origin:seq` string: a follower looks up every entry here.)
  #inflight = new Map<string, Map<number, Promise<number>>>();
  #applyListeners = new Set<ApplyListener>();
  #writtenListeners = new Set<WrittenListener>();
  #snapshotLsn = 0;
  #appliedLsn = 0;
  #bytesSinceSnapshot = 0;
  /** Size of the newest snapshot written or loaded (0: none), for snapshotWalPercent. */
  #lastSnapshotBytes = 0;
  #snapshotting: Promise<void> | undefined;
  #conflicts = 0;
  // Entries held only through installed peer snapshots (see snapshotOnly()); kept in every
  // snapshot file so a restart keeps knowing the WAL cannot serve them.
  #snapshotOnly: VersionVector = {};
  // The LSN of the install that first brought snapshot-only entries (see SnapshotMeta.installLsn).
  #installLsn: number | undefined;
  // Replication cursors of the loaded snapshot, when it was this data directory's own.
  #loadedCursors: Record<string, LeaderCursor> = {};
  // Per sending peer, the version vector before the first chunk of its transfer was merged.
  #installBases = new Map<string, VersionVector>();
  // Per sending peer, every key its transfer's chunks carried so far (installSnapshot).
  #transferKeys = new Map<string, Set<string>>();
  // The install under way, from its first step until its vector counts: the snapshot's vector
  // and keys. An entry it covers whose key it lacks is counted but changes no record.
  #installing: InstallUnderWay | undefined;
  // The last install queued (installSnapshot runs them one at a time).
  #installs: Promise<void> = Promise.resolve();

  private constructor(options: StoreOptions) {
    this.#options = options;
    this.nodeId = options.nodeId;
    this.origin = options.origin ?? options.nodeId;
    this.dataDir = options.dataDir;
    this.valueBytesMax = options.valueBytesMax ?? VALUE_BYTES_DEFAULT;
    this.events = options.events ?? new EventBus();
    this.keyspace = new Keyspace(options.resolver);
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? silentLogger;
  }

  static async open(options: StoreOptions): Promise<Store> {
    const store = new Store(options);
    await store.#recover();
    return store;
  }

  get snapshotDir(): string {
    return `${this.dataDir}/snapshots`;
  }

  get walDir(): string {
    return this.#options.walDir ?? `${this.dataDir}/wal`;
  }

  get wal(): Wal {
    return this.#wal;
  }

  get lastLsn(): number {
    return this.#wal.lastLsn;
  }

  /** The WAL's writtenLsn: entries written to the file, not all of them durable yet. */
  get writtenLsn(): number {
    return this.#wal.writtenLsn;
  }

  /**
   * The LSN the view (keys, version vector) reflects. It trails lastLsn only while the WAL's
   * onDurable applies a batch entry by entry (apply listeners see that); at every other moment
   * the two are equal, since the WAL moves lastLsn in the same step as it hands the batch over.
   */
  get appliedLsn(): number {
    return this.#appliedLsn;
  }

  get snapshotLsn(): number {
    return this.#snapshotLsn;
  }

  /** An HLC reading at the wall clock: every later local write is above it. */
  hlcNow(): number {
    return this.hlc.now(this.#clock.nowMs());
  }

  get conflicts(): number {
    return this.#conflicts;
  }

  async #recover(): Promise<void> {
    let snapshotLsn = 0;
    for (const { path, lsn } of await listSnapshots(this.snapshotDir)) {
      try {
        const snapshot = readSnapshot(path);
        this.keyspace.load(snapshot.records, snapshot.versionVector, snapshot.ahead);
        this.hlc.observe(snapshot.hlc);
        this.#snapshotOnly = snapshot.snapshotOnly ?? {};
        this.#installLsn = snapshot.installLsn;
        // Another origin's cursors (a restored directory) may count entries this one lacks;
        // an origin this log wrote under before a crash is the same log.
        const cursorsOrigin = snapshot.followerCursors?.origin;
        this.#loadedCursors = cursorsOrigin !== undefined &&
            (cursorsOrigin === this.origin ||
              (this.#options.priorOrigins ?? []).includes(cursorsOrigin))
          ? snapshot.followerCursors!.leaders
          : {};
        snapshotLsn = lsn;
        this.#lastSnapshotBytes = (await Deno.stat(path)).size;
        this.#logger.info("Loaded snapshot", { path, lsn, keys: snapshot.keys });
        break;
      } catch (error) {
        if (!(error instanceof SnapshotError)) throw error;
        // An older snapshot plus a longer replay reaches the same state.
        this.#logger.warn("Skipping damaged snapshot", { path, reason: error.message });
      }
    }
    this.#snapshotLsn = snapshotLsn;
    this.#appliedLsn = snapshotLsn;
    this.#wal = await Wal.open(this.walDir, {
      segmentBytesMax: this.#options.segmentBytesMax,
      batchEntriesMax: this.#options.batchEntriesMax,
      replicatedBatchEntriesMax: this.#options.replicatedBatchEntriesMax,
      batchBytesMax: this.#options.batchBytesMax,
      preallocateBytes: this.#options.preallocateBytes,
      inlineSync: this.#options.inlineSync,
      expectedWriters: this.#options.expectedWriters,
      beforeSync: this.#options.beforeSync,
      gatherMicros: this.#options.gatherMicros,
      dropBehindBytes: this.#options.dropBehindBytes,
      onPageCacheUnavailable: (reason) =>
        this.#logger.info("WAL pages stay in the OS page cache: they cannot be dropped here", {
          reason,
        }),
      verifyFromLsn: snapshotLsn + 1,
      nextLsnAtLeast: snapshotLsn + 1,
      clock: this.#clock,
      onDurable: (entries, info) => this.#onDurable(entries, info),
      onWritten: (entries, records) => this.#onWritten(entries, records),
      onRepair: (message) => {
        this.#logger.warn(message);
        this.events.emit("wal.repaired", { message });
      },
      onPreallocateFailed: (error) => {
        const reason = error instanceof Error ? error.message : String(error);
        this.#logger.warn(
          "WAL preallocation is off until restart: laying zeros ahead of the writer failed",
          {
            reason,
            walDir: this.walDir,
            advice:
              "Writes go on, slower (each fdatasync also records the file's growth); check free disk space and permissions of the WAL directory; --wal-preallocate-bytes 0 turns preallocation off on purpose",
          },
        );
        this.events.emit("wal.preallocate.failed", { reason });
      },
    });
    if (this.#wal.firstLsn > snapshotLsn + 1) {
      throw new CorruptionError(
        this.walDir,
        0,
        `the WAL starts at LSN ${this.#wal.firstLsn} but the newest usable snapshot ends at ${snapshotLsn}`,
        "Entries in between are missing: restore the data directory from a backup",
      );
    }
    let lsn = snapshotLsn + 1;
    while (lsn <= this.#wal.lastLsn) {
      const entries = await this.#wal.read(lsn, { limit: READ_ENTRIES_MAX });
      if (entries.length === 0) break;
      for (const entry of entries) this.#apply(entry);
      lsn = entries[entries.length - 1].lsn + 1;
    }
    // Its own entries above a gap count too: numbering on from the vector would reuse theirs.
    this.#localSeq = this.keyspace.highestSeq(this.origin);
    // The WAL replayed counts toward the next snapshot: counting from zero at every start, a
    // node that crashed more often than a snapshot came due never took one, and each restart
    // replayed more.
    this.#bytesSinceSnapshot = walBytesAfter(this.#wal.segments(), snapshotLsn);
  }

  #apply(entry: Entry): void {
    this.hlc.observe(entry.hlc);
    this.#appliedLsn = entry.lsn;
    // Held already: a snapshot's vector counted it while it waited in the WAL's queue (or, on
    // a replay, the loaded snapshot's did). That view has its effect, and a delete since.
    if (this.keyspace.has(entry.origin, entry.seq)) {
      for (const listener of this.#applyListeners) listener(entry, DUPLICATE);
      return;
    }
    if (
      this.#installing !== undefined && this.#deletedByInstall(this.#installing, entry.key, entry)
    ) {
      this.keyspace.count(entry.origin, entry.seq);
      for (const listener of this.#applyListeners) listener(entry, DUPLICATE);
      return;
    }
    const result = this.keyspace.apply(entry);
    if (result.concurrent) {
      this.#conflicts++;
      this.events.emit("replication.conflict", {
        key: entry.key,
        winnerOrigin: result.applied ? entry.origin : result.loser?.origin ?? "",
        loserOrigin: result.applied ? result.loser?.origin ?? "" : entry.origin,
      });
    }
    for (const listener of this.#applyListeners) listener(entry, result);
  }

  #onDurable(entries: readonly Entry[], info: BatchInfo): void {
    let delaysMs: number[] | undefined;
    const nowMs = this.#clock.nowMs();
    for (const entry of entries) {
      this.#apply(entry);
      if (entry.origin !== this.origin) {
        this.#inflight.get(entry.origin)?.delete(entry.seq);
        // Origin's wall clock at the write -> readable here (skew between hosts included).
        (delaysMs ??= []).push(Math.max(0, nowMs - hlcWallMs(entry.hlc)));
      }
    }
    if (delaysMs !== undefined) this.events.emit("replication.applied", { delaysMs });
    this.events.emit("wal.write.completed", {
      durationMs: info.writeMs + info.syncMs,
      syncMs: info.syncMs,
      bytes: info.bytes,
      entries: info.entries,
      gatherMs: info.gatherMs,
    });
    this.#bytesSinceSnapshot += info.bytes;
    const due = this.snapshotDueBytes;
    if (due > 0 && this.#bytesSinceSnapshot >= due && this.#snapshotting === undefined) {
      this.snapshot().catch((error) =>
        this.#logger.error("Snapshot failed", { error: String(error) })
      );
    }
  }

  #onWritten(entries: readonly Entry[], records: () => Uint8Array[]): boolean {
    let yieldFirst = false;
    for (const listener of this.#writtenListeners) {
      try {
        if (listener(entries, records)) yieldFirst = true;
      } catch (error) {
        // A listener's fault must not fail the batch: its writers are owed their answer.
        this.#logger.error("WAL written listener failed", { error: String(error) });
      }
    }
    return yieldFirst;
  }

  /**
   * Subscribes to batches written to the WAL and not yet durable (WalOptions.onWritten: a
   * listener answers true when queued microtasks should run before the sync); returns the
   * unsubscribe function.
   */
  onWritten(listener: WrittenListener): () => void {
    this.#writtenListeners.add(listener);
    return () => this.#writtenListeners.delete(listener);
  }

  /** Subscribes to applied entries; returns the unsubscribe function. */
  onApply(listener: ApplyListener): () => void {
    this.#applyListeners.add(listener);
    return () => this.#applyListeners.delete(listener);
  }

  #checkValue(value: Uint8Array): void {
    if (value.length > this.valueBytesMax) {
      throw new TooLargeError("value", value.length, this.valueBytesMax);
    }
  }

  #local(op: Entry["op"], key: string, value: Uint8Array | null, contentType: string): EntryInput {
    const previous = key === "" ? undefined : this.keyspace.getVersion(key);
    return {
      origin: this.origin,
      seq: ++this.#localSeq,
      hlc: this.hlc.now(this.#clock.nowMs()),
      op,
      key,
      value,
      contentType,
      prevHlc: previous?.hlc ?? 0,
      prevOrigin: previous?.origin ?? "",
    };
  }

  async #write(input: EntryInput): Promise<WriteResult> {
    const lsn = await this.#wal.append(input);
    return { lsn, origin: input.origin, seq: input.seq, hlc: input.hlc };
  }

  /**
   * Local writes made from now until `until` settles wait for it before they are numbered, in
   * the order they came (a node holds them until a peer's vector has shown whether its peers
   * hold more of its origin: see ShanghaiNode and Shipper's #noteOwnOrigin).
   */
  holdLocalWrites(until: Promise<unknown>): void {
    const hold: Promise<void> = until.then(() => {}, () => {}).then(() => {
      if (this.#localHold === hold) this.#localHold = undefined;
    });
    this.#localHold = hold;
  }

  /** Numbers and writes a local entry, after the hold when there is one. */
  #writeLocal(
    op: Entry["op"],
    key: string,
    value: Uint8Array | null,
    contentType: string,
  ): Promise<WriteResult> {
    const hold = this.#localHold;
    if (hold === undefined) return this.#write(this.#local(op, key, value, contentType));
    const bytes = key.length + (value?.length ?? 0);
    const held = this.#heldWrites;
    if (held.entries >= PENDING_ENTRIES_MAX || held.bytes + bytes > PENDING_BYTES_MAX) {
      return Promise.reject(
        new OverloadedError(
          "overloaded",
          `Cannot write: ${held.entries} writes already wait for a peer's answer after the start; retry later`,
        ),
      );
    }
    held.entries++;
    held.bytes += bytes;
    return hold.then(() => {
      held.entries--;
      held.bytes -= bytes;
      return this.#write(this.#local(op, key, value, contentType));
    });
  }

  /** Puts `value` under `key`; resolves once the entry is durable. */
  put(key: string, value: Uint8Array, contentType: string): Promise<WriteResult> {
    validateKey(key);
    this.#checkValue(value);
    return this.#writeLocal("put", key, value, contentType);
  }

  /** Writes a tombstone for `key`. */
  delete(key: string): Promise<WriteResult> {
    validateKey(key);
    return this.#writeLocal("delete", key, null, "");
  }

  /** Appends an opaque entry to the log (it does not touch the key-value view). */
  append(value: Uint8Array, contentType = "application/octet-stream"): Promise<WriteResult> {
    this.#checkValue(value);
    return this.#writeLocal("append", "", value, contentType);
  }

  /** Checks a peer's entry the way applyRemote will, without writing (all-or-nothing batches). */
  checkRemote(entry: EntryInput): void {
    if (entry.origin.length > ORIGIN_BYTES_MAX) {
      throw new InputError(
        "bad_request",
        `Invalid origin: ${entry.origin.length} characters, over the limit of ${ORIGIN_BYTES_MAX}`,
      );
    }
    if (entry.key !== "") validateKey(entry.key);
    if (entry.value) this.#checkValue(entry.value);
  }

  /**
   * Merges records from a peer's snapshot into the view, version by version (the same rule
   * as for entries). Not durable by itself, so not counted in the version vector either:
   * {@link installSnapshot} persists the result and raises the vector to the snapshot's. A
   * vector raised record by record told peers (in every ack and status report) that this node
   * held entries a crash before the install took away; a peer's leader, sure its follower
   * held them, never sent them again, and the two never converged. `source` names the
   * sending peer.
   *
   * A record whose entry this node holds already is left out, as a log copy of it would be:
   * this node's view has that write or what replaced it. The copy was taken before the
   * transfer began and can be older than this view: a put whose delete this node applied
   * since, and whose tombstone it collected once every member held the delete, would
   * otherwise come back here (no tombstone is left to outrank it). So is a record an install
   * under way covers for a key that install lacks (see installSnapshot). `first` marks a
   * transfer's first chunk: the keys noted for `source` start over.
   */
  mergeRecords(records: readonly [string, KeyRecord][], source = "", first = false): void {
    if (!this.#installBases.has(source)) {
      this.#installBases.set(source, this.keyspace.versionVector());
    }
    let keys = this.#transferKeys.get(source);
    if (keys === undefined || first) this.#transferKeys.set(source, keys = new Set());
    const installing = this.#installing;
    for (const [key, record] of records) {
      keys.add(key);
      if (this.#held(record)) continue;
      if (installing !== undefined && this.#deletedByInstall(installing, key, record)) continue;
      this.hlc.observe(record.hlc);
      // LSN 0: the peer's LSN means nothing in this node's WAL.
      this.keyspace.apply({ ...recordToEntry(key, record), lsn: 0 }, false);
    }
  }

  /**
   * Completes a snapshot transfer: raises the version vector to the peer's and writes a local
   * snapshot of the merged view, so a restart keeps what the transfer brought (those entries
   * are not in this node's WAL). Resolves once the snapshot is durable.
   *
   * It writes two copies at the same LSN: the store keeps the newest two snapshots, the older
   * as the fallback if the newest is damaged, and an older fallback plus the WAL would not
   * hold the installed state. Entries the transfer brought are recorded in snapshotOnly().
   */
  installSnapshot(
    versionVector: VersionVector,
    hlc: number,
    source = "",
    ahead: AheadRanges = {},
  ): Promise<void> {
    // One install at a time: each keeps what its vector covers out of the view until it counts.
    const install = this.#installs.then(() => this.#install(versionVector, hlc, source, ahead));
    this.#installs = install.catch(() => {});
    return install;
  }

  async #install(
    versionVector: VersionVector,
    hlc: number,
    source: string,
    ahead: AheadRanges,
  ): Promise<void> {
    this.hlc.observe(hlc);
    // The sender may count writes of this node's origin that this node no longer holds (they
    // come with the transfer): its next writes are numbered past them at once, before the
    // vector that counts them goes live.
    this.raiseLocalSeq(highestCounted(versionVector, ahead, this.origin));
    // The sender applied every entry its vector covers: where its view has no record of a key
    // this node holds a covered write of, it deleted the key and collected the tombstone. This
    // node may have that write from another stream or transfer while the delete reaches it only
    // through this vector, so the key goes here too (a pass in steps, before the snapshot that
    // keeps the install is captured), and from now until the vector counts, entries and records
    // it covers for keys it lacks stay out of the view. (Should the snapshot fail, such entries
    // stay counted without a record: the delete the sender applied is what they came to.)
    const keys = this.#transferKeys.get(source) ?? new Set<string>();
    this.#transferKeys.delete(source);
    const applied = appliedBy(versionVector, ahead);
    this.#installing = { applied, keys };
    let snapshotOnly: VersionVector;
    try {
      const pass = this.keyspace.beginDropDeletedBy(applied, keys);
      await runInSteps(() => pass.step(INSTALL_PASS_STEP_KEYS));
      while (this.#snapshotting) await this.#snapshotting.catch(() => {});
      snapshotOnly = raiseSnapshotOnly(
        this.#snapshotOnly,
        raisedByAhead(versionVector, ahead),
        source,
        this.#installBases,
        this.keyspace.versionVector(),
      );
      // The merged vector (and the sender's entries held above a gap, whose records came with
      // the rest) goes into the snapshot file first and into the live view only once that file
      // is durable: peers count copies from the live vector.
      this.#snapshotting = this.#snapshot({
        force: true,
        mergeVv: versionVector,
        mergeAhead: ahead,
        snapshotOnly,
        copies: 2,
      }).finally(() => this.#snapshotting = undefined);
      await this.#snapshotting;
    } finally {
      this.#installing = undefined;
    }
    this.#installBases.delete(source);
    this.#snapshotOnly = snapshotOnly;
    // From here the vector holds what the snapshot covers: such an entry still in the WAL's
    // queue changes no record when it lands (#apply), nor on a replay after a restart.
    this.keyspace.mergeVersionVector(versionVector);
    this.keyspace.countAhead(ahead);
  }

  /** Whether the install under way covers `record`'s write of `key` and lacks the key. */
  #deletedByInstall(
    installing: InstallUnderWay,
    key: string,
    record: { origin: string; seq: number },
  ): boolean {
    return installing.applied(record.origin, record.seq) && !installing.keys.has(key);
  }

  /**
   * The replication cursors the loaded snapshot kept (by leader node id), when this data
   * directory wrote it: every entry of each leader's log up to its cursor is held here.
   */
  followerCursors(): Record<string, LeaderCursor> {
    return { ...this.#loadedCursors };
  }

  /**
   * Entries this node holds only because a peer's snapshot brought them (per origin, the
   * highest such sequence): they are not in its WAL, so a peer lacking any of them must be
   * sent a snapshot, not the log.
   */
  snapshotOnly(): VersionVector {
    return { ...this.#snapshotOnly };
  }

  /**
   * Appends an entry that another node accepted, keeping its identity. Resolves with
   * undefined, writing nothing, when the entry is already held or on its way to disk.
   */
  async applyRemote(entry: EntryInput): Promise<number | undefined> {
    const { fresh, queued } = this.#sortRemote([entry]);
    // A copy from another stream is queued already: this one settles when that one is
    // durable, so a batch that only repeats it is not acknowledged before it is on disk.
    if (fresh.length === 0) return queued.length > 0 ? queued[0].then(() => undefined) : undefined;
    this.checkRemote(entry);
    return await this.#appendRemote(fresh);
  }

  /**
   * Appends a peer's batch as {@link applyRemote} appends each entry, in order, through one
   * WAL call; resolves once every entry is durable (held ones and copies queued by another
   * stream included). Every entry is checked before any is queued: all or nothing. `lsn`
   * fields, if the entries carry them, are the sender's and are ignored.
   */
  applyRemoteBatch(entries: readonly EntryInput[]): Promise<void> {
    try {
      for (const entry of entries) this.checkRemote(entry);
    } catch (error) {
      return Promise.reject(error);
    }
    const { fresh, queued } = this.#sortRemote(entries);
    if (fresh.length > 0) queued.push(this.#appendRemote(fresh));
    return Promise.all(queued).then(() => undefined);
  }

  /**
   * Splits a peer's entries into those to append and the appends already queued for copies
   * of the others (from another stream); held ones are in neither.
   */
  #sortRemote(entries: readonly EntryInput[]): { fresh: EntryInput[]; queued: Promise<unknown>[] } {
    const fresh: EntryInput[] = [];
    const queued: Promise<unknown>[] = [];
    for (const entry of entries) {
      if (this.#held(entry)) continue;
      const append = this.#inflight.get(entry.origin)?.get(entry.seq);
      if (append !== undefined) queued.push(append);
      else fresh.push(entry);
    }
    return { fresh, queued };
  }

  /**
   * Queues checked peer entries in one WAL call and records them as in flight until
   * #onDurable applies them (or the append fails); resolves with the last one's LSN.
   */
  #appendRemote(fresh: readonly EntryInput[]): Promise<number> {
    for (const entry of fresh) this.hlc.observe(entry.hlc);
    const append = this.#wal.appendBatch(fresh, true);
    for (const { origin, seq } of fresh) {
      let bySeq = this.#inflight.get(origin);
      if (bySeq === undefined) this.#inflight.set(origin, bySeq = new Map());
      bySeq.set(seq, append);
    }
    append.catch(() => {
      for (const { origin, seq } of fresh) this.#inflight.get(origin)?.delete(seq);
    });
    return append;
  }

  /**
   * Numbers the next local write above `seq`, when it would not be already: a peer holds
   * this node's origin up to `seq`, so this node numbered that far once, and its data
   * directory no longer holds all of it (see Shipper: a directory rolled back or a disk that
   * lost writes it had made durable). Returns the sequence number of the last local write
   * before when it raised it, undefined when it was at `seq` or past it.
   */
  raiseLocalSeq(seq: number): number | undefined {
    if (!Number.isSafeInteger(seq) || seq <= this.#localSeq) return undefined;
    const before = this.#localSeq;
    this.#localSeq = seq;
    return before;
  }

  /**
   * A peer's entry (or snapshot record) this node holds already (it raises localSeq past our
   * own entries first).
   */
  #held(entry: { origin: string; seq: number }): boolean {
    if (entry.origin === this.origin) {
      // Our own entry coming back from a peer: we hold it unless it was lost, which
      // cannot happen to an acknowledged entry. Either way its sequence must never be reused.
      this.raiseLocalSeq(entry.seq);
    }
    return this.keyspace.has(entry.origin, entry.seq);
  }

  get(key: string): KeyRecord | undefined {
    return this.keyspace.get(key);
  }

  /** Live keys in order (Keyspace.scan); call {@link sortKeysInSteps} first where you can wait. */
  scan(options: { prefix?: string; after?: string; limit: number }): [string, KeyRecord][] {
    return this.keyspace.scan(options);
  }

  /**
   * Keyspace.collectTombstones in steps of TOMBSTONE_SWEEP_STEP_KEYS tombstones with a turn of
   * the event loop between them, while writes go on. Resolves with how many were removed.
   */
  async collectTombstones(stable: VersionVector, belowHlc: number): Promise<number> {
    const sweep = this.keyspace.beginTombstoneSweep(stable, belowHlc);
    // Bounded: tombstones made during the sweep may be looked at too, but not without end.
    const stepsMax = 2 * Math.ceil(this.keyspace.tombstones / TOMBSTONE_SWEEP_STEP_KEYS) + 10;
    await runInSteps(() => sweep.step(TOMBSTONE_SWEEP_STEP_KEYS), stepsMax);
    // The key order notes each collected key until its next rebuild, and a view never scanned
    // would note keys that come and go without end: rebuild it here, in steps.
    if (sweep.removed > 0 && this.keyspace.pendingSortKeys > SORT_AT_ONCE_KEYS_MAX) {
      await this.sortKeysInSteps();
    }
    return sweep.removed;
  }

  /**
   * Brings the view's key order up to date in steps of about a millisecond
   * (Keyspace.sortKeysStep) with a turn of the event loop between them, so that a scan or sorted
   * read right after holds the loop for little: after a bulk load of 300,000 keys the first scan
   * sorted them in one piece (about 214 ms). At most {@link SORT_STEPS_MAX} steps; what is left
   * then, the scan does at once.
   */
  async sortKeysInSteps(): Promise<void> {
    await runInSteps(() => this.keyspace.sortKeysStep(), SORT_STEPS_MAX);
  }

  readLog(fromLsn: number, limit: number): Promise<Entry[]> {
    if (!Number.isSafeInteger(fromLsn) || fromLsn < 0) {
      throw new InputError("bad_query", `Invalid LSN ${fromLsn}: expected a whole number >= 0`);
    }
    return this.#wal.read(fromLsn, { limit });
  }

  versionVector(): VersionVector {
    return this.keyspace.versionVector();
  }

  /** See {@link Keyspace.vectorChanges}. */
  get vectorChanges(): number {
    return this.keyspace.vectorChanges;
  }

  /**
   * WAL bytes after which the next snapshot is taken (0: only when asked): the larger of
   * snapshotEveryBytes and snapshotWalPercent of the last snapshot's size. A snapshot rewrites
   * the whole data set, so the second term keeps what snapshots write per WAL byte bounded as
   * the data set grows.
   */
  get snapshotDueBytes(): number {
    const every = this.#options.snapshotEveryBytes ?? SNAPSHOT_EVERY_BYTES_DEFAULT;
    if (every <= 0) return 0;
    const percent = this.#options.snapshotWalPercent ?? SNAPSHOT_WAL_PERCENT_DEFAULT;
    return Math.max(every, Math.ceil(this.#lastSnapshotBytes * percent / 100));
  }

  /** Writes a snapshot of the view at the current durable LSN, then applies retention. */
  snapshot(): Promise<void> {
    this.#snapshotting ??= this.#snapshot().finally(() => this.#snapshotting = undefined);
    return this.#snapshotting;
  }

  async #snapshot(
    options: {
      force?: boolean;
      mergeVv?: VersionVector;
      mergeAhead?: AheadRanges;
      snapshotOnly?: VersionVector;
      copies?: number;
    } = {},
  ): Promise<void> {
    const {
      force = false,
      mergeVv,
      mergeAhead,
      snapshotOnly = this.#snapshotOnly,
      copies = 1,
    } = options;
    const started = this.#clock.monoMs();
    // Everything up to lastLsn is applied (the view applies batches as they become durable),
    // and captureView() begins its copy in the same synchronous step as it reads the vector and
    // HLC and as the cursors are read below, so all of them are the state at exactly `lsn`.
    const lsn = this.lastLsn;
    if (lsn === this.#snapshotLsn && !force) return;
    const view = this.captureView();
    // Cursors only count entries already applied, so the records hold all they count. With
    // no source (replication not running) the loaded ones still hold: carry them forward.
    const leaders = this.#options.followerCursors?.() ?? this.#loadedCursors;
    // The first snapshot to carry snapshot-only entries is the install's: it marks the LSN from
    // which the WAL alone no longer holds the state; later snapshots carry it forward.
    const installLsn = Object.keys(snapshotOnly).length === 0
      ? undefined
      : Object.keys(this.#snapshotOnly).length === 0
      ? lsn
      : this.#installLsn;
    this.#bytesSinceSnapshot = 0;
    const captured = await view;
    const { versionVector, hlc, state } = captured;
    const ahead = mergeAhead === undefined
      ? captured.ahead
      : mergeAheadRanges(captured.ahead, mergeAhead);
    for (const [origin, seq] of Object.entries(mergeVv ?? {})) {
      if (seq > (versionVector[origin] ?? 0)) versionVector[origin] = seq;
    }
    // A forced snapshot at an LSN that already has one adds a later generation beside it.
    let generation = 0;
    for (const old of await listSnapshots(this.snapshotDir)) {
      if (old.lsn === lsn) generation = Math.max(generation, old.generation + 1);
    }
    const meta = {
      lsn,
      createdMs: this.#clock.nowMs(),
      nodeId: this.nodeId,
      versionVector,
      hlc,
      snapshotOnly,
      ...(Object.keys(ahead).length > 0 ? { ahead } : {}),
      ...(installLsn !== undefined ? { installLsn } : {}),
      followerCursors: { origin: this.origin, leaders },
    };
    let written = { path: "", bytes: 0 };
    for (let copy = 0; copy < copies; copy++) {
      written = await writeSnapshot(this.snapshotDir, meta, state, generation + copy);
    }
    const { path, bytes } = written;
    this.#snapshotLsn = lsn;
    this.#lastSnapshotBytes = bytes;
    this.#installLsn = installLsn;
    this.events.emit("snapshot.completed", {
      lsn,
      keys: state.keys.length,
      bytes,
      durationMs: this.#clock.monoMs() - started,
    });
    this.#logger.info("Snapshot written", { path, lsn, keys: state.keys.length, bytes });
    // Keep the newest two snapshots: the older one is the fallback if the newest is damaged.
    for (const old of (await listSnapshots(this.snapshotDir)).slice(2)) {
      await Deno.remove(old.path).catch(() => {});
    }
    await this.#applyRetention();
  }

  /**
   * A copy of every record (tombstones included) as of now, at LSN `lsn` with the version vector
   * and HLC of now, taken over the next turns of the event loop (see #completeCapture): what a
   * local snapshot writes and what a snapshot transfer sends a peer.
   */
  captureView(): Promise<{
    lsn: number;
    versionVector: VersionVector;
    ahead: AheadRanges;
    hlc: number;
    state: KeyspaceCapture;
  }> {
    // The LSN the view reflects, which the WAL keeps equal to lastLsn outside onDurable.
    const lsn = this.appliedLsn;
    invariant(
      lsn === this.lastLsn,
      `Capture of the view at ${lsn} with the WAL at ${this.lastLsn}`,
    );
    const versionVector = this.keyspace.versionVector();
    const ahead = this.keyspace.aheadRanges();
    const hlc = this.hlc.last;
    return this.#completeCapture(this.keyspace.beginCapture())
      .then((state) => ({ lsn, versionVector, ahead, hlc, state }));
  }

  /**
   * Takes a capture to its end, SNAPSHOT_CAPTURE_STEP_KEYS records per turn of the event loop:
   * copying 300,000 records in one go held the loop for 20-50 ms.
   */
  async #completeCapture(capture: KeyspaceCaptureInProgress): Promise<KeyspaceCapture> {
    try {
      const stepKeys = this.#options.snapshotCaptureStepKeys ?? SNAPSHOT_CAPTURE_STEP_KEYS;
      await runInSteps(() => capture.step(stepKeys));
    } catch (error) {
      capture.cancel();
      throw error;
    }
    return { keys: capture.keys, records: capture.records };
  }

  async #applyRetention(): Promise<void> {
    const started = this.#clock.monoMs();
    const retainBytes = this.#options.retainBytes ?? RETAIN_BYTES_DEFAULT;
    // The oldest LSN the second-newest snapshot needs: the fallback must stay loadable.
    const snapshots = await listSnapshots(this.snapshotDir);
    const fallbackLsn = snapshots.length > 1
      ? snapshots[snapshots.length - 1].lsn
      : this.#snapshotLsn;
    let floor = Math.min(this.#snapshotLsn, fallbackLsn) + 1;
    // Keep a tail of retainBytes for peers catching up.
    const segments = this.#wal.segments();
    let kept = 0;
    for (let i = segments.length - 1; i >= 0; i--) {
      kept += segments[i].bytes;
      if (kept >= retainBytes) {
        floor = Math.min(floor, segments[i].firstLsn);
        break;
      }
      if (i === 0) floor = Math.min(floor, segments[0].firstLsn);
    }
    const hold = this.#options.retentionHoldLsn?.();
    if (hold !== undefined) floor = Math.min(floor, hold);
    const removed = await this.#wal.removeBefore(floor);
    if (removed.length > 0) {
      const bytesRemoved = removed.reduce((sum, s) => sum + s.bytes, 0);
      this.events.emit("retention.completed", {
        segmentsRemoved: removed.length,
        bytesRemoved,
        durationMs: this.#clock.monoMs() - started,
      });
      this.#logger.info("Retention removed WAL segments", {
        segments: removed.length,
        bytes: bytesRemoved,
      });
    }
  }

  /** Finishes queued writes, takes a snapshot so the next start replays little, and closes. */
  async close(options: { snapshot?: boolean } = {}): Promise<void> {
    if (this.#snapshotting) await this.#snapshotting.catch(() => {});
    await this.#wal.close();
    if (options.snapshot ?? true) {
      await this.#snapshot().catch((error) =>
        this.#logger.error("Snapshot at close failed", { error: String(error) })
      );
    }
  }
}

/**
 * About how many WAL bytes hold entries after `lsn`: every segment that starts past it, and of
 * the segment it falls in the share of its entries after it (entries taken as alike in size).
 */
export function walBytesAfter(segments: readonly SegmentInfo[], lsn: number): number {
  let bytes = 0;
  for (const segment of segments) {
    if (segment.lastLsn <= lsn) continue;
    const entries = segment.lastLsn - segment.firstLsn + 1;
    const after = segment.lastLsn - Math.max(lsn, segment.firstLsn - 1);
    bytes += segment.firstLsn > lsn ? segment.bytes : Math.round(segment.bytes * after / entries);
  }
  return bytes;
}

/** `vv` with each origin raised to the highest sequence `ahead` names for it. */
export function raisedByAhead(vv: VersionVector, ahead: AheadRanges): VersionVector {
  const out = { ...vv };
  for (const [origin, ranges] of Object.entries(ahead)) {
    const top = ranges[ranges.length - 1]?.[1] ?? 0;
    if (top > (out[origin] ?? 0)) out[origin] = top;
  }
  return out;
}

/**
 * `snapshotOnly` raised by an install of `versionVector` from `source`: every origin the
 * snapshot holds past the version vector from before the transfer's first chunk. Other
 * transfers still under way may have merged records too (not yet recorded, perhaps never, if
 * their sender dies): the lowest of all their starting vectors is used, so nothing is missed
 * (at worst a peer later gets a snapshot it could have done without). Exported for the
 * simulation's in-memory log.
 */
export function raiseSnapshotOnly(
  snapshotOnly: VersionVector,
  versionVector: VersionVector,
  source: string,
  bases: ReadonlyMap<string, VersionVector>,
  current: VersionVector,
): VersionVector {
  const base = { ...(bases.get(source) ?? current) };
  for (const other of bases.values()) {
    for (const origin of Object.keys(base)) {
      base[origin] = Math.min(base[origin], other[origin] ?? 0);
    }
  }
  const out = { ...snapshotOnly };
  for (const [origin, seq] of Object.entries(versionVector)) {
    if (seq > (base[origin] ?? 0) && seq > (out[origin] ?? 0)) out[origin] = seq;
  }
  return out;
}
