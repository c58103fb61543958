/**
 * The key-value view: applies entries in any order and lands on the same state, because the
 * winner for a key is the greater version `(hlc, origin)` (see compareVersions). Pure: no I/O.
 *
 * Deletes stay as tombstones (value null) so a late, older put cannot resurrect a key.
 *
 * @module
 */
import { invariant } from "../../common/invariant.ts";
import {
  compareVersions,
  type Entry,
  internString,
  type Version,
  type VersionVector,
} from "../../common/entry.ts";
import { ORIGIN_BYTES_MAX } from "../../common/limits.ts";
import { slabBytesHandedOut } from "../../common/value_slab.ts";
import { PackedRecord } from "./_packed_record.ts";
import { rebuildSortedKeys, SORT_STEP_UNITS, SortedKeyList } from "./sorted_keys.ts";

/**
 * Keys written or collected since the sorted key list was rebuilt, at most, for a scan to rebuild
 * it at once: sorting this many takes about a millisecond here. A node's scans and digests first
 * rebuild it in steps ({@link Keyspace.sortKeysStep}) when more are pending.
 */
export const SORT_AT_ONCE_KEYS_MAX = 2_000;

/** A rebuild of the sorted key list, with the noted keys it took. */
interface SortedKeysRebuild {
  added: string[];
  removed: string[];
  steps: Generator<void, SortedKeyList, void>;
}

/**
 * A key's version. The records a Keyspace hands out (to resolvers, scans, captures) are packed
 * (see _packed_record.ts) and serve `value`, `hlc` and `prevHlc` through getters: read fields by
 * name, as `{ ...record }` does not copy those three.
 */
export interface KeyRecord {
  /** null marks a tombstone. */
  value: Uint8Array | null;
  contentType: string;
  hlc: number;
  origin: string;
  seq: number;
  /** LSN of the entry in this node's WAL. */
  lsn: number;
  prevHlc: number;
  prevOrigin: string;
}

export interface ApplyResult {
  /** The entry's version won and is now the key's value. */
  applied: boolean;
  /** The entry and the key's previous version were written without seeing each other. */
  concurrent: boolean;
  /** The version that lost, when there was one. */
  loser?: Version;
}

/** Decides which of two concurrent versions wins. Must be deterministic and symmetric. */
export type ConflictResolver = (a: KeyRecord, b: KeyRecord) => KeyRecord;

/** Last writer wins: the greater (hlc, origin). */
export const lastWriterWins: ConflictResolver = (a, b) => compareVersions(a, b) >= 0 ? a : b;

function sameVersion(a: Version, hlc: number, origin: string): boolean {
  return a.hlc === hlc && a.origin === origin;
}

/** The put or delete entry that a key's record stands for (the inverse of applying it). */
export function recordToEntry(key: string, record: KeyRecord): Entry {
  return {
    lsn: record.lsn,
    origin: record.origin,
    seq: record.seq,
    hlc: record.hlc,
    op: record.value === null ? "delete" : "put",
    key,
    value: record.value,
    contentType: record.contentType,
    prevHlc: record.prevHlc,
    prevOrigin: record.prevOrigin,
  };
}

/**
 * A buffer that several values are views into: a replication batch's payload, whose values a
 * follower keeps where they arrived (decodeBatchEntries) instead of copying each into memory of
 * its own, or a slab that HTTP request bodies were read into (value_slab.ts). One value still
 * held keeps the whole buffer, so the view counts what each such buffer still holds and copies
 * the survivors out of one that holds less than half its size in values (then forgets it); a
 * slab still being carved counts only what was handed out of it so far. Every buffer but the
 * ones being filled therefore holds at least half its size in live values, and a value is copied
 * at most once.
 */
interface SharedBuffer {
  /** Bytes of its views that are some key's value now. */
  liveBytes: number;
  /** Keys given a view into it, in order; some hold another value since. */
  keys: string[];
}

/** Shared buffers holding live values, and their sizes (see {@link Keyspace.sharedBuffers}). */
export interface SharedBufferStats {
  buffers: number;
  bytes: number;
  liveBytes: number;
}

/**
 * What keys held at one moment, for the keys changed since (their first change only): every
 * other key still holds its record of then. Kept by a capture or sorted read of that moment.
 */
class RecordsOfMoment {
  readonly #before = new Map<string, KeyRecord | undefined>();

  /** `key` is about to change from `previous` (undefined: it did not exist). */
  note(key: string, previous: KeyRecord | undefined): void {
    if (!this.#before.has(key)) this.#before.set(key, previous);
  }

  /** The record `key` held at the moment, given `current`, the one it holds now. */
  at(key: string, current: KeyRecord | undefined): KeyRecord | undefined {
    return this.#before.has(key) ? this.#before.get(key) : current;
  }

  forget(key: string): void {
    this.#before.delete(key);
  }

  clear(): void {
    this.#before.clear();
  }
}

/** A copy of every record (see {@link Keyspace.capture}): `records[i]` is `keys[i]`'s. */
export interface KeyspaceCapture {
  keys: string[];
  records: KeyRecord[];
}

/**
 * A copy of every record as of one moment, taken in steps ({@link Keyspace.beginCapture}), so
 * copying a large view never holds the event loop for long. Between steps the view keeps taking
 * writes: the capture walks the live map (a `Map` iterator visits each key present when it
 * reaches it, once) and the view tells it, before each change, which record a key held. A key
 * changed before the walk reaches it is copied as it was then; one created since is skipped.
 * Nothing is removed from the view while a capture runs (tombstone collection waits), so every
 * key of the moment is still there to be reached.
 */
export class KeyspaceCaptureInProgress {
  /** The copy; whole once {@link step} returns true (`records[i]` is `keys[i]`'s). */
  readonly keys: string[];
  readonly records: KeyRecord[];
  readonly #size: number;
  #iterator: MapIterator<[string, KeyRecord]> | undefined;
  #copied = 0;
  // Keys changed since the moment, with the record they held then.
  readonly #before = new RecordsOfMoment();
  readonly #release: (capture: KeyspaceCaptureInProgress) => void;
  /** A walk of the live map: a key removed before it is reached would be missed. */
  readonly holdsKeys = true;

  constructor(
    map: Map<string, KeyRecord>,
    release: (capture: KeyspaceCaptureInProgress) => void,
  ) {
    this.#size = map.size;
    this.#iterator = map.entries();
    // Sized once: grown push by push, copying the arrays at 175,000 and 263,000 records held
    // one step for 14-20 ms.
    this.keys = new Array(this.#size);
    this.records = new Array(this.#size);
    this.#release = release;
  }

  /** Records the capture copies (every key of the moment, tombstones included). */
  get size(): number {
    return this.#size;
  }

  /** Called by the view before `key`'s record changes from `previous` (undefined: a new key). */
  beforeChange(key: string, previous: KeyRecord | undefined): void {
    this.#before.note(key, previous);
  }

  /**
   * Copies up to `max` more records; returns true once the copy is whole. Throws once the
   * capture was cancelled.
   */
  step(max: number): boolean {
    const iterator = this.#iterator;
    if (iterator === undefined) {
      if (this.#copied === this.#size) return true;
      throw new Error("Cannot go on with a capture that was cancelled");
    }
    for (let n = 0; n < max && this.#copied < this.#size; n++) {
      const next = iterator.next();
      if (next.done) {
        this.cancel();
        throw new Error(
          `Capture walked the view and found ${this.#copied} of its ${this.#size} records`,
        );
      }
      const [key, record] = next.value;
      const held = this.#before.at(key, record);
      // Reached once: a later change of this key needs no record of what it held.
      this.#before.forget(key);
      if (held === undefined) continue; // created after the moment
      this.keys[this.#copied] = key;
      this.records[this.#copied++] = held;
    }
    if (this.#copied < this.#size) return false;
    this.cancel();
    return true;
  }

  /** Stops following the view's writes; a capture given up must call it. */
  cancel(): void {
    if (this.#iterator === undefined) return;
    this.#iterator = undefined;
    this.#before.clear();
    this.#release(this);
  }
}

/**
 * The view as of one moment, read key by key in key order while writes go on
 * ({@link Keyspace.beginSortedRead}): the keys are the view's sorted key list of the moment (an
 * array the view replaces and never changes), and a key's record is the one it held then,
 * handed over by the view before any change or removal, so a key untouched since the moment
 * still holds its record of then. It does not hold up tombstone collection.
 */
export class KeyspaceSortedRead {
  /** Every key of the moment, tombstones included, in the order of {@link Keyspace.scan}. */
  readonly keys: SortedKeyList;
  readonly #map: Map<string, KeyRecord>;
  readonly #before = new RecordsOfMoment();
  readonly #release: (read: KeyspaceSortedRead) => void;
  #open = true;
  /** Its keys are a list of the moment: a key that leaves the view is told, as any change. */
  readonly holdsKeys = false;

  constructor(
    map: Map<string, KeyRecord>,
    keys: SortedKeyList,
    release: (read: KeyspaceSortedRead) => void,
  ) {
    this.#map = map;
    this.keys = keys;
    this.#release = release;
  }

  /** Called by the view before `key`'s record changes from `previous` (undefined: a new key). */
  beforeChange(key: string, previous: KeyRecord | undefined): void {
    this.#before.note(key, previous);
  }

  /** The record `key` held at the moment (undefined: none). Throws once closed. */
  recordAt(key: string): KeyRecord | undefined {
    if (!this.#open) throw new Error("Cannot read the view of a moment after closing it");
    return this.#before.at(key, this.#map.get(key));
  }

  /** Stops following the view's writes; every read must be closed. */
  close(): void {
    if (!this.#open) return;
    this.#open = false;
    this.#before.clear();
    this.#release(this);
  }
}

/** A pass over the view taken in steps ({@link Keyspace.beginDropDeletedBy}). */
export interface KeyPass {
  /** Looks at up to `maxKeys` more keys; true once the pass is over. */
  step(maxKeys: number): boolean;
  /** Keys removed so far. */
  readonly removed: number;
}

/** A tombstone collection taken in steps ({@link Keyspace.beginTombstoneSweep}). */
export interface TombstoneSweep {
  /** Looks at up to `maxKeys` more tombstones; true once the sweep is over. */
  step(maxKeys: number): boolean;
  /** Tombstones removed so far. */
  readonly removed: number;
}

/** What the view tells, before each change, the reads and captures of a moment running. */
interface MomentFollower {
  /** Called before `key` changes or leaves the view (tombstone collection). */
  beforeChange(key: string, previous: KeyRecord | undefined): void;
  /** True when no key may leave the view meanwhile (a walk of the live map). */
  readonly holdsKeys: boolean;
}

export class Keyspace {
  #map = new Map<string, PackedRecord>();
  // The sorted key list is rebuilt lazily (see sorted_keys.ts): writes and tombstone collection
  // only note the keys they add and remove, and scans pay once. The list is replaced, never
  // changed in place: a sorted read holds it.
  #sorted = SortedKeyList.EMPTY;
  #newKeys: string[] = [];
  // Keys removed by tombstone collection but maybe still in #sorted.
  #removedKeys: string[] = [];
  // A rebuild taken in steps (sortKeysStep), with the keys it took from #newKeys and #removedKeys.
  #rebuilding: SortedKeysRebuild | undefined;
  #live = 0;
  // Invariant: vv[o] is the highest seq of origin o such that all of 1..vv[o] were applied.
  #vv: VersionVector = {};
  #vvChanges = 0;
  #ahead = new Map<string, Set<number>>();
  // Keys whose record is a tombstone, so collecting them never scans live keys.
  #tombstoneKeys = new Set<string>();
  // Buffers that values are views into (see SharedBuffer), and the one the latest came from:
  // it is still being filled, and is judged once values start coming from another.
  #shared = new Map<ArrayBufferLike, SharedBuffer>();
  #filling: ArrayBufferLike | undefined;
  // Captures and sorted reads of a moment, running: told of every change before it is made.
  #captures = new Set<MomentFollower>();
  readonly resolver: ConflictResolver;

  constructor(resolver: ConflictResolver = lastWriterWins) {
    this.resolver = resolver;
  }

  get size(): number {
    return this.#live;
  }

  get tombstones(): number {
    return this.#map.size - this.#live;
  }

  /**
   * Applies one entry (put, delete or append) and advances the version vector, or, with
   * `counted` false, leaves the vector as it is: a record of a peer's snapshot in transfer is
   * readable at once but held only in memory until the transfer's snapshot is durable, and
   * the vector is what this node tells its peers it holds (Store.mergeRecords).
   */
  apply(entry: Entry, counted = true): ApplyResult {
    if (counted) this.#advance(entry.origin, entry.seq);
    if (entry.op === "append") return { applied: true, concurrent: false };
    const incoming = new PackedRecord(
      entry.op === "delete" ? null : entry.value,
      entry.op === "delete" ? "" : internString(entry.contentType),
      entry.hlc,
      entry.origin,
      entry.seq,
      entry.lsn,
      entry.prevHlc,
      entry.prevOrigin,
    );
    const current = this.#map.get(entry.key);
    if (current === undefined) {
      this.#set(entry.key, incoming, undefined);
      return { applied: true, concurrent: false };
    }
    const order = compareVersions(incoming, current);
    if (order === 0) return { applied: false, concurrent: false }; // a duplicate
    const newer = order > 0 ? incoming : current;
    const older = order > 0 ? current : incoming;
    // Causal when the newer write saw the older one (or something after it).
    const causal = sameVersion(older, newer.prevHlc, newer.prevOrigin) ||
      compareVersions({ hlc: newer.prevHlc, origin: newer.prevOrigin }, older) > 0;
    const winner = causal ? newer : this.resolver(incoming, current);
    if (winner === incoming) this.#set(entry.key, incoming, current);
    return {
      applied: winner === incoming,
      concurrent: !causal,
      loser: winner === incoming ? current : incoming,
    };
  }

  #set(key: string, record: PackedRecord, previous: PackedRecord | undefined): void {
    if (this.#captures.size > 0) {
      for (const capture of this.#captures) capture.beforeChange(key, previous);
    }
    if (previous === undefined) this.#newKeys.push(key);
    const wasLive = previous !== undefined && !previous.isTombstone;
    const isLive = !record.isTombstone;
    this.#live += (isLive ? 1 : 0) - (wasLive ? 1 : 0);
    if (isLive) this.#tombstoneKeys.delete(key);
    else this.#tombstoneKeys.add(key);
    this.#map.set(key, record);
    if (record.isShared) this.#holdShared(key, record.valueBuffer!, record.valueBytes);
    if (previous?.isShared) this.#dropShared(previous.valueBuffer!, previous.valueBytes);
  }

  /**
   * Takes `key` (holding `record`) out of the view: tombstone collection and an install's pass.
   * The caller makes sure no capture walks the map (it would miss the key).
   */
  #remove(key: string, record: PackedRecord): void {
    for (const follower of this.#captures) follower.beforeChange(key, record);
    this.#map.delete(key);
    this.#removedKeys.push(key);
    if (record.isTombstone) this.#tombstoneKeys.delete(key);
    else this.#live--;
    if (record.isShared) this.#dropShared(record.valueBuffer!, record.valueBytes);
  }

  #holdShared(key: string, buffer: ArrayBufferLike, bytes: number): void {
    if (buffer !== this.#filling) {
      if (this.#filling !== undefined) this.#judgeShared(this.#filling);
      this.#filling = buffer;
    }
    let shared = this.#shared.get(buffer);
    if (shared === undefined) this.#shared.set(buffer, shared = { liveBytes: 0, keys: [] });
    shared.liveBytes += bytes;
    shared.keys.push(key);
  }

  #dropShared(buffer: ArrayBufferLike, bytes: number): void {
    const shared = this.#shared.get(buffer);
    if (shared === undefined) return;
    shared.liveBytes -= bytes;
    if (shared.liveBytes <= 0) this.#shared.delete(buffer);
    else if (buffer !== this.#filling) this.#judgeShared(buffer);
  }

  /**
   * Copies the live values out of `buffer` when they fill less than half of what was handed out
   * of it: all of it, but for a slab of request bodies still being carved (slabBytesHandedOut).
   */
  #judgeShared(buffer: ArrayBufferLike): void {
    const shared = this.#shared.get(buffer);
    if (shared === undefined || shared.liveBytes * 2 >= slabBytesHandedOut(buffer)) return;
    this.#shared.delete(buffer);
    if (this.#filling === buffer) this.#filling = undefined;
    for (const key of shared.keys) {
      const record = this.#map.get(key);
      // Records are never changed in place (a snapshot being written may hold this one).
      if (record !== undefined && record.valueBuffer === buffer) {
        this.#map.set(key, record.withValue(record.value!.slice()));
      }
    }
  }

  /** What shared buffers hold (see SharedBuffer), for the `shanghai_kv_shared_buffer_*` gauges. */
  sharedBuffers(): SharedBufferStats {
    let bytes = 0;
    let liveBytes = 0;
    for (const [buffer, shared] of this.#shared) {
      bytes += buffer.byteLength;
      liveBytes += shared.liveBytes;
    }
    return { buffers: this.#shared.size, bytes, liveBytes };
  }

  #advance(origin: string, seq: number): void {
    const have = this.#vv[origin] ?? 0;
    if (seq <= have) return;
    if (seq === have + 1) {
      let next = seq;
      const ahead = this.#ahead.get(origin);
      while (ahead?.delete(next + 1)) next++;
      this.#vv[origin] = next;
      this.#vvChanges++;
      if (ahead && ahead.size === 0) this.#ahead.delete(origin);
    } else {
      let ahead = this.#ahead.get(origin);
      if (!ahead) this.#ahead.set(origin, ahead = new Set());
      ahead.add(seq);
    }
  }

  /** The live record for `key` (tombstones read as absent). */
  get(key: string): KeyRecord | undefined {
    const record = this.#map.get(key);
    return record?.isTombstone ? undefined : record;
  }

  /** The record for `key`, tombstone included. */
  getVersion(key: string): KeyRecord | undefined {
    return this.#map.get(key);
  }

  /** True when the entry `(origin, seq)` has been applied. */
  has(origin: string, seq: number): boolean {
    return seq <= (this.#vv[origin] ?? 0) || (this.#ahead.get(origin)?.has(seq) ?? false);
  }

  versionVector(): VersionVector {
    return { ...this.#vv };
  }

  /**
   * How many times the version vector has changed: equal counts mean an equal vector, so
   * whatever is derived from it (a causal token) can be kept until the count moves.
   */
  get vectorChanges(): number {
    return this.#vvChanges;
  }

  /** `versionVector()[origin]` (0 when absent) without copying the vector. */
  vectorSeq(origin: string): number {
    return this.#vv[origin] ?? 0;
  }

  /**
   * The highest sequence number of `origin` applied here: the vector's, or an entry's above a
   * gap (see {@link has}), whichever is higher.
   */
  highestSeq(origin: string): number {
    let highest = this.#vv[origin] ?? 0;
    for (const seq of this.#ahead.get(origin) ?? []) if (seq > highest) highest = seq;
    return highest;
  }

  /** True while some applied entry sits above a gap in its origin's sequence (not in the vector). */
  hasGaps(): boolean {
    return this.#ahead.size > 0;
  }

  /**
   * The applied entries above a gap (see {@link has}), per origin, as sorted inclusive ranges:
   * what a snapshot keeps beside the vector. Their records are in the view; a snapshot that
   * kept the vector alone came back without them, and once the gap was filled after it, the
   * reloaded vector stopped at the filler. A peer took the vector reported before the restart
   * for what the node held and never sent those entries again.
   */
  aheadRanges(): AheadRanges {
    const out: AheadRanges = {};
    for (const [origin, seqs] of this.#ahead) out[origin] = toRanges(seqs);
    return out;
  }

  /** Live keys in byte order of their UTF-16 code units, starting after `after`. */
  scan(options: { prefix?: string; after?: string; limit: number }): [string, KeyRecord][] {
    this.#sortKeys();
    const prefix = options.prefix ?? "";
    const start = options.after !== undefined && options.after >= prefix ? options.after : prefix;
    const out: [string, KeyRecord][] = [];
    if (options.limit <= 0) return out;
    for (const key of this.#sorted.keysFrom(start)) {
      if (!key.startsWith(prefix)) break;
      if (key === options.after) continue;
      const record = this.#map.get(key);
      if (record !== undefined && !record.isTombstone) {
        out.push([key, record]);
        if (out.length >= options.limit) break;
      }
    }
    return out;
  }

  /**
   * Keys written or collected that the sorted key list does not reflect yet. They hold on to
   * their strings until a rebuild, so a view whose keys come and go (written once, deleted,
   * collected) and is never scanned must still be rebuilt now and then (Store.collectTombstones).
   */
  get pendingSortKeys(): number {
    const taken = this.#rebuilding;
    return this.#notedKeys + (taken === undefined ? 0 : taken.added.length + taken.removed.length);
  }

  /** Keys noted since the last rebuild began. */
  get #notedKeys(): number {
    return this.#newKeys.length + this.#removedKeys.length;
  }

  /** Brings the sorted key list up to date at once, taking over a rebuild running in steps. */
  #sortKeys(): void {
    if (this.#rebuilding !== undefined) {
      this.#newKeys = this.#rebuilding.added.concat(this.#newKeys);
      this.#removedKeys = this.#rebuilding.removed.concat(this.#removedKeys);
      this.#rebuilding = undefined;
    }
    if (this.#newKeys.length === 0 && this.#removedKeys.length === 0) return;
    const done = this.#startRebuild(Infinity).steps.next();
    invariant(done.done === true, "A sorted key list rebuild without steps yielded");
    this.#sorted = done.value;
  }

  /**
   * One step (about `stepUnits` of work, see sorted_keys.ts) toward an up-to-date sorted key
   * list, which a caller with time takes between turns of the event loop before a scan or a
   * sorted read. Writes may go on between steps. True once what is left for the scan to do at
   * once is at most {@link SORT_AT_ONCE_KEYS_MAX} keys; a rebuild left unfinished is taken
   * over by the next scan.
   */
  sortKeysStep(stepUnits: number = SORT_STEP_UNITS): boolean {
    let rebuilding = this.#rebuilding;
    if (rebuilding === undefined) {
      if (this.#notedKeys <= SORT_AT_ONCE_KEYS_MAX) return true;
      rebuilding = this.#rebuilding = this.#startRebuild(stepUnits);
    }
    const step = rebuilding.steps.next();
    if (!step.done) return false;
    this.#sorted = step.value;
    this.#rebuilding = undefined;
    return this.#notedKeys <= SORT_AT_ONCE_KEYS_MAX;
  }

  /**
   * A rebuild of the sorted list from the keys noted so far. Keys written or collected while it
   * runs are noted for the next one; a collected key leaves now only if still gone when the
   * rebuild reaches it (it may have been written again).
   */
  #startRebuild(stepUnits: number): SortedKeysRebuild {
    const added = this.#newKeys;
    const removed = this.#removedKeys;
    this.#newKeys = [];
    this.#removedKeys = [];
    const map = this.#map;
    const steps = rebuildSortedKeys(
      this.#sorted,
      added,
      removed,
      (key) => !map.has(key),
      stepUnits,
    );
    return { added, removed, steps };
  }

  /**
   * Raises the version vector to at least `vv` (after merging a peer's snapshot, whose
   * records stand for every entry its vector names).
   */
  mergeVersionVector(vv: VersionVector): void {
    for (const [origin, seq] of Object.entries(vv)) {
      if (seq <= (this.#vv[origin] ?? 0)) continue;
      this.#vv[origin] = seq;
      this.#vvChanges++;
      const ahead = this.#ahead.get(origin);
      if (!ahead) continue;
      for (const held of ahead) if (held <= seq) ahead.delete(held);
      let next = seq;
      while (ahead.delete(next + 1)) next++;
      this.#vv[origin] = next;
      if (ahead.size === 0) this.#ahead.delete(origin);
    }
  }

  /**
   * Removes the live keys a peer's snapshot says were deleted (Store.installSnapshot): each
   * whose record `applied` names (the snapshot's vector and entries above a gap, see
   * {@link appliedBy}), so the sender had applied that write,
   * and which the snapshot does not hold (`kept`), so the sender's view has no record of the
   * key: it applied a delete after the write and collected the tombstone. In steps, with
   * writes between them (the caller keeps records the pass must remove from entering
   * meanwhile). A step while a capture walks the map does nothing (it may not lose keys; it
   * ends within a second): call again on a later turn. Ends early when load() replaced the
   * state.
   */
  beginDropDeletedBy(applied: AppliedBy, kept: ReadonlySet<string>): KeyPass {
    const map = this.#map;
    const entries = map.entries();
    let removed = 0;
    let done = false;
    const step = (maxKeys: number): boolean => {
      if (done || map !== this.#map) return done = true;
      for (const follower of this.#captures) if (follower.holdsKeys) return false;
      for (let looked = 0; looked < maxKeys; looked++) {
        const next = entries.next();
        if (next.done) return done = true;
        const [key, record] = next.value;
        if (record.isTombstone || !applied(record.origin, record.seq) || kept.has(key)) continue;
        this.#remove(key, record);
        removed++;
      }
      return false;
    };
    return {
      step,
      get removed() {
        return removed;
      },
    };
  }

  /**
   * Counts the entry `origin`:`seq` in the version vector without changing any record (an
   * entry a snapshot being installed stands for: Store.installSnapshot).
   */
  count(origin: string, seq: number): void {
    this.#advance(origin, seq);
  }

  /**
   * Removes tombstones that no older write can ever reach again: the delete is held by every
   * member (`stable`, the element-wise minimum of every member's version vector, covers it)
   * and its HLC is below `belowHlc` (every origin's later writes are above it). Returns how
   * many were removed.
   */
  collectTombstones(stable: VersionVector, belowHlc: number): number {
    const sweep = this.beginTombstoneSweep(stable, belowHlc);
    sweep.step(Infinity);
    return sweep.removed;
  }

  /**
   * {@link collectTombstones} in steps, with writes between them: each step looks at up to
   * `maxKeys` tombstones. Tombstones made meanwhile may be looked at too; `stable` and
   * `belowHlc` only grow with time, so the ones given at the start stay safe to use. The sweep
   * ends early when a capture walking the map runs (it must find every key of its moment:
   * collect after it, it takes well under a second) or when load() replaced the state. Sorted
   * reads are told of each removal instead.
   */
  beginTombstoneSweep(stable: VersionVector, belowHlc: number): TombstoneSweep {
    // load() replaces the set: a sweep begun on the state it replaced stops.
    const tombstoneKeys = this.#tombstoneKeys;
    const tombstones = tombstoneKeys.values();
    let removed = 0;
    let done = false;
    const step = (maxKeys: number): boolean => {
      if (done) return true;
      done = tombstoneKeys !== this.#tombstoneKeys;
      for (const follower of this.#captures) if (follower.holdsKeys) done = true;
      for (let looked = 0; !done && looked < maxKeys; looked++) {
        const next = tombstones.next();
        if (next.done) {
          done = true;
          break;
        }
        const key = next.value;
        const record = this.#map.get(key);
        if (record === undefined || !record.isTombstone) continue;
        if (record.hlc < belowHlc && record.seq <= (stable[record.origin] ?? 0)) {
          this.#remove(key, record);
          removed++;
        }
      }
      return done;
    };
    return {
      step,
      get removed() {
        return removed;
      },
    };
  }

  /**
   * Every record, tombstones included, as two parallel arrays, in one synchronous step (the
   * simulated replica log and tests; a node copies its view with {@link beginCapture}, which
   * holds the event loop for far less). A copy: safe across awaits. Not an array of
   * `[key, record]` pairs: those were one short array per key,
   * every one of them alive through the young-generation collections of a snapshot's write,
   * and copying them made scavenges of 50-110 ms at 200,000 keys; two flat arrays live in the
   * large-object space and the keys and records they point to are old already.
   */
  capture(): KeyspaceCapture {
    const keys: string[] = [];
    const records: KeyRecord[] = [];
    this.#map.forEach((record, key) => {
      keys.push(key);
      records.push(record);
    });
    return { keys, records };
  }

  /**
   * Starts a {@link KeyspaceCaptureInProgress}: a copy of every record as of now that the caller
   * takes in steps, with the view taking writes between them. It must be stepped to the end or
   * cancelled: until then tombstones are not collected.
   */
  beginCapture(): KeyspaceCaptureInProgress {
    const capture = new KeyspaceCaptureInProgress(
      this.#map,
      (done) => this.#captures.delete(done),
    );
    this.#captures.add(capture);
    return capture;
  }

  /**
   * Starts a {@link KeyspaceSortedRead} of the view as of now: its keys in order, each read as
   * of now however many turns later. It must be closed (until then the view tells it of every
   * change).
   * Sorts the keys written since the last scan first (the cost a prefix scan pays too).
   */
  beginSortedRead(): KeyspaceSortedRead {
    this.#sortKeys();
    const read = new KeyspaceSortedRead(
      this.#map,
      this.#sorted,
      (done) => this.#captures.delete(done),
    );
    this.#captures.add(read);
    return read;
  }

  /**
   * Every record, tombstones included, as the view holds it now: for a consumer that reads it
   * all in one synchronous step (a digest). Use {@link capture} to keep a copy.
   */
  entries(): IterableIterator<[string, KeyRecord]> {
    return this.#map.entries();
  }

  /** Replaces the state with a snapshot's: its records, vector and entries above gaps. */
  load(records: Iterable<[string, KeyRecord]>, vv: VersionVector, ahead: AheadRanges = {}): void {
    invariant(this.#captures.size === 0, "Keyspace.load() while a capture or sorted read runs");
    this.#map = new Map();
    this.#sorted = SortedKeyList.EMPTY;
    this.#newKeys = [];
    this.#removedKeys = [];
    this.#rebuilding = undefined;
    this.#live = 0;
    this.#tombstoneKeys = new Set();
    this.#shared = new Map();
    this.#filling = undefined;
    for (const [key, record] of records) {
      this.#set(key, PackedRecord.of(record), this.#map.get(key));
    }
    this.#vv = { ...vv };
    this.#vvChanges++;
    this.#ahead = new Map();
    this.countAhead(ahead);
  }

  /**
   * Counts entries held above a gap whose records the view holds (a snapshot's, or a peer's
   * transfer's, see Keyspace.aheadRanges): the vector takes them in as it takes applied ones.
   */
  countAhead(ahead: AheadRanges): void {
    for (const [origin, ranges] of Object.entries(ahead)) {
      for (const [from, to] of ranges) {
        for (let seq = from; seq <= to; seq++) this.#advance(origin, seq);
      }
    }
  }
}

/** Entries held above a gap, per origin: sorted, disjoint, inclusive [from, to] ranges. */
export type AheadRanges = Record<string, [number, number][]>;

/** The highest sequence number of `origin` that `vv` and `ahead` count (0 when none). */
export function highestCounted(vv: VersionVector, ahead: AheadRanges, origin: string): number {
  const ranges = ahead[origin] ?? [];
  return Math.max(vv[origin] ?? 0, ranges[ranges.length - 1]?.[1] ?? 0);
}

/**
 * `value` as {@link AheadRanges} when it has their shape (per origin of 1 to ORIGIN_BYTES_MAX
 * characters, sorted, disjoint, inclusive ranges of positive sequence numbers) holding at most
 * `bounds.rangesMax` ranges and `bounds.entriesMax` entries in all (no bound by default);
 * otherwise why not.
 * What a snapshot file's header and a transfer's last chunk are checked with, and what a sender
 * checks before it sends its own.
 */
export function checkAheadRanges(
  value: unknown,
  bounds: { rangesMax: number; entriesMax: number } = {
    rangesMax: Infinity,
    entriesMax: Infinity,
  },
): AheadRanges | string {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return "is not a map";
  let ranges = 0;
  let entries = 0;
  for (const [origin, list] of Object.entries(value)) {
    if (origin.length === 0 || origin.length > ORIGIN_BYTES_MAX || !Array.isArray(list)) {
      return `entry ${JSON.stringify(origin)} is malformed`;
    }
    ranges += list.length;
    if (ranges > bounds.rangesMax) return `holds over ${bounds.rangesMax} ranges`;
    let last = 0;
    for (const range of list) {
      const [from, to] = Array.isArray(range) && range.length === 2 ? range : [];
      if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || from <= last || to < from) {
        const shown = JSON.stringify(range);
        return `entry ${JSON.stringify(origin)} holds ${shown}, out of order or not a range`;
      }
      entries += to - from + 1;
      if (entries > bounds.entriesMax) return `names over ${bounds.entriesMax} entries`;
      last = to;
    }
  }
  return value as AheadRanges;
}

/** Whether a peer's snapshot stands for entry `origin`:`seq` (see {@link appliedBy}). */
export type AppliedBy = (origin: string, seq: number) => boolean;

/**
 * The entries a snapshot's sender had applied: those its vector covers and those it held above
 * a gap (`ahead`, sorted ranges, searched by halves).
 */
export function appliedBy(vv: VersionVector, ahead: AheadRanges = {}): AppliedBy {
  return (origin, seq) => {
    if (seq <= (vv[origin] ?? 0)) return true;
    const ranges = ahead[origin];
    if (ranges === undefined) return false;
    let lo = 0;
    let hi = ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const [from, to] = ranges[mid];
      if (seq < from) hi = mid - 1;
      else if (seq > to) lo = mid + 1;
      else return true;
    }
    return false;
  };
}

/** `a` and `b` together, as sorted, disjoint ranges per origin. */
export function mergeAheadRanges(a: AheadRanges, b: AheadRanges): AheadRanges {
  const out: AheadRanges = {};
  for (const origin of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const seqs = new Set<number>();
    for (const [from, to] of [...(a[origin] ?? []), ...(b[origin] ?? [])]) {
      for (let seq = from; seq <= to; seq++) seqs.add(seq);
    }
    out[origin] = toRanges(seqs);
  }
  return out;
}

function toRanges(seqs: Iterable<number>): [number, number][] {
  const sorted = [...seqs].sort((a, b) => a - b);
  const ranges: [number, number][] = [];
  for (const seq of sorted) {
    const last = ranges[ranges.length - 1];
    if (last !== undefined && seq === last[1] + 1) last[1] = seq;
    else ranges.push([seq, seq]);
  }
  return ranges;
}
