/**
 * The newest durable entries of this node's log, kept in memory (bounded in bytes) with their
 * framed encoding, so leaders serving caught-up followers neither read the disk nor decode and
 * re-encode each entry once per peer. A follower behind the cache is served from the WAL.
 * One cache per node, shared by every stream, so its bound is a fixed cost, not per follower.
 *
 * @module
 */
import { encodeEntry, type Entry } from "../common/entry.ts";
import { frameRecord } from "../storage/wal/record.ts";
import type { FramedEntry } from "./replica_log.ts";

/** An entry with its record, framed once and only when first asked for (or handed over). */
class LazyFramedEntry implements FramedEntry {
  readonly entry: Entry;
  #frame: Uint8Array | undefined;

  constructor(entry: Entry, frame?: Uint8Array) {
    this.entry = entry;
    this.#frame = frame;
  }

  get lsn(): number {
    return this.entry.lsn;
  }

  get origin(): string {
    return this.entry.origin;
  }

  get seq(): number {
    return this.entry.seq;
  }

  /** The entry's record: the WAL's copy when it was handed over, else encoded once, here. */
  frame(): Uint8Array {
    return this.#frame ??= frameRecord(encodeEntry(this.entry));
  }
}

/**
 * A held entry, handed out as it is by {@link TailCache.read}: a leader re-reads its follower's
 * range on every pump while it holds back relays (until a paced cursor-only batch covers them),
 * and an object and a closure per entry per read were about an eighth of a follower's
 * allocations (docs/BENCHMARKS.md, session 31).
 */
class Item extends LazyFramedEntry {
  readonly bytes: number;

  constructor(entry: Entry, bytes: number, frame: Uint8Array | undefined) {
    super(entry, frame);
    this.bytes = bytes;
  }
}

const ENTRY_OVERHEAD_BYTES = 256;

export class TailCache {
  readonly bytesMax: number;
  // Invariant: items hold consecutive LSNs.
  #items: Item[] = [];
  #head = 0;
  #bytes = 0;
  #lastAdded: number | undefined;

  constructor(bytesMax: number) {
    this.bytesMax = bytesMax;
  }

  /** What the held entries count for against bytesMax. */
  get bytes(): number {
    return this.#bytes;
  }

  get firstLsn(): number | undefined {
    return this.#head < this.#items.length ? this.#items[this.#head].entry.lsn : undefined;
  }

  /**
   * The lowest LSN the cache can serve now or later: its oldest entry's, or, when it holds
   * none, the LSN after the last one added (entries come in LSN order, so it never gets an
   * older one back). Undefined before any entry, or after a gap cleared it.
   */
  get fromLsn(): number | undefined {
    return this.firstLsn ?? (this.#lastAdded === undefined ? undefined : this.#lastAdded + 1);
  }

  /**
   * Adds an entry to ship (entries arrive in LSN order), with its record when the WAL handed it
   * over (then the same bytes frameRecord(encodeEntry(entry)) gives).
   */
  onApply(entry: Entry, frame?: Uint8Array): void {
    const last = this.#items[this.#items.length - 1];
    if (this.#head < this.#items.length && last.entry.lsn + 1 !== entry.lsn) this.clear();
    // Counted twice: the entry holds its value and, once a leader asked, its framed copy.
    const bytes = 2 * ((entry.value?.length ?? 0) + entry.key.length) + ENTRY_OVERHEAD_BYTES;
    this.#items.push(new Item(entry, bytes, frame));
    this.#bytes += bytes;
    this.#lastAdded = entry.lsn;
    while (this.#bytes > this.bytesMax && this.#head < this.#items.length) {
      this.#bytes -= this.#items[this.#head].bytes;
      this.#head++;
    }
    this.#compact();
  }

  /**
   * Drops the entries up to `lsn` (every stream has them acknowledged), so a healthy cluster
   * holds an entry only for the few milliseconds until its acks arrive instead of for as long
   * as the byte bound allows: held entries outlive young-generation collections, and copying
   * them there is what made a leader's scavenges pause 3-4 ms. A stream that rewinds below
   * the cache reads from the WAL, as one that fell behind it always did.
   */
  releaseThrough(lsn: number): void {
    while (this.#head < this.#items.length && this.#items[this.#head].entry.lsn <= lsn) {
      this.#bytes -= this.#items[this.#head].bytes;
      this.#head++;
    }
    this.#compact();
  }

  #compact(): void {
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
      return;
    }
    // Now and then instead of shifting on every eviction.
    if (this.#head > 4096 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
  }

  clear(): void {
    this.#items = [];
    this.#head = 0;
    this.#bytes = 0;
    this.#lastAdded = undefined;
  }

  /**
   * Entries from `fromLsn`, at most `entriesMax` and about `bytesMax` (at least one), or
   * undefined when `fromLsn` is not in the cache.
   */
  read(fromLsn: number, entriesMax: number, bytesMax: number): FramedEntry[] | undefined {
    const first = this.firstLsn;
    if (first === undefined || fromLsn < first) return undefined;
    const start = this.#head + (fromLsn - first);
    if (start >= this.#items.length) return undefined;
    const items = this.#items;
    const last = Math.min(items.length, start + entriesMax);
    let end = start + 1; // at least one
    let bytes = items[start].bytes;
    while (end < last && bytes + items[end].bytes <= bytesMax) bytes += items[end++].bytes;
    return items.slice(start, end);
  }
}

/** Frames entries read from the WAL (no cache hit). */
export function framed(entries: readonly Entry[]): FramedEntry[] {
  return entries.map((entry) => new LazyFramedEntry(entry));
}
