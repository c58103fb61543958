/**
 * The key-value view's keys in order, for prefix scans and sorted reads: an immutable list of
 * sorted chunks ({@link SortedKeyList}), rebuilt from the list as it was, the keys written since
 * (unsorted) and the keys tombstone collection removed since ({@link rebuildSortedKeys}), in work
 * that can be taken in steps. Pure: no I/O, no timers.
 *
 * Why chunks: a rebuild copies only the chunks a change falls into and passes the others on as
 * they are, and it never allocates one array of every key. With one flat array, a scan after a
 * single new key copied all 300,000 keys (1-12 ms, most of it first touches of a fresh 2.4 MB
 * array on these VMs), taking one collected key out filtered all of them (56-83 ms), and
 * allocating the merged array of 600,000 keys alone took 24-29 ms in one piece.
 *
 * Why steps: sorting 300,000 new keys in one go held the event loop for about 214 ms (the first
 * prefix scan after a bulk load). In steps, the new keys are sorted in runs of
 * {@link SORT_RUN_KEYS}, one run per step, and read in order through a heap of the runs while
 * they are merged into the list, a slice at a time (steps of about 1 ms, the longest 3-7 ms).
 *
 * The loops that touch every key are plain functions that do a slice of work and return: V8
 * cannot optimize a long loop inside a generator's single call (no on-stack replacement there).
 *
 * Order: UTF-16 code units, as `Array.prototype.sort()` and `<` on strings.
 *
 * @module
 */

/** Keys per chunk a rebuild aims at. */
export const SORTED_CHUNK_KEYS = 1_024;
/** A chunk that grows to this many keys is split. */
const CHUNK_KEYS_MAX = 2 * SORTED_CHUNK_KEYS;
/** A chunk that would end smaller than this is merged into the next one instead. */
const CHUNK_KEYS_MIN = SORTED_CHUNK_KEYS / 4;

/** New keys sorted in one piece when sorting in steps: well under a millisecond here. */
export const SORT_RUN_KEYS = 2_048;

/** Work per step, in keys merged (sorting a key within a run counts as a few): about 1 ms here. */
export const SORT_STEP_UNITS = 20_000;

/** What sorting a run costs per key, in units (about log2 of the run's size). */
const RUN_SORT_UNITS_PER_KEY = 10;

/** What asking whether a collected key is gone costs, in units (a map lookup). */
const GONE_CHECK_UNITS = 4;

/** Every key of the view at one moment, in order, as sorted chunks that are never changed. */
export class SortedKeyList implements Iterable<string> {
  static readonly EMPTY = new SortedKeyList([]);

  /** Non-empty sorted chunks, each key above every key of the chunk before. */
  readonly chunks: readonly (readonly string[])[];
  readonly length: number;

  constructor(chunks: readonly (readonly string[])[]) {
    this.chunks = chunks;
    let length = 0;
    for (const chunk of chunks) length += chunk.length;
    this.length = length;
  }

  /** The keys not below `from` (all when absent), in order. */
  *keysFrom(from?: string): Generator<string, void, undefined> {
    const { chunks } = this;
    let c = 0;
    let i = 0;
    if (from !== undefined) {
      // The first chunk whose last key is not below `from`, then the key within it.
      let hi = chunks.length;
      while (c < hi) {
        const mid = (c + hi) >> 1;
        const chunk = chunks[mid];
        if (chunk[chunk.length - 1] < from) c = mid + 1;
        else hi = mid;
      }
      if (c < chunks.length) i = lowerBound(chunks[c], from, 0);
    }
    for (; c < chunks.length; c++, i = 0) {
      const chunk = chunks[c];
      for (; i < chunk.length; i++) yield chunk[i];
    }
  }

  [Symbol.iterator](): Generator<string, void, undefined> {
    return this.keysFrom();
  }
}

/**
 * `list` rebuilt: with `added` merged in (any order, repeats and keys already in `list`
 * allowed), less every key of `removed` (any order) for which `isGone(key)` holds when the
 * rebuild reaches it. Each key comes out once.
 *
 * Yields after about `stepUnits` of work each time (Infinity: never, and the new keys are sorted
 * in one piece), and returns the new list. None of the arrays given is changed, and the caller
 * must not change them until the rebuild is done.
 */
export function* rebuildSortedKeys(
  list: SortedKeyList,
  added: readonly string[],
  removed: readonly string[],
  isGone: (key: string) => boolean,
  stepUnits: number = SORT_STEP_UNITS,
): Generator<void, SortedKeyList, void> {
  const budget = { left: stepUnits };
  const fresh = yield* sortRuns(added, budget, stepUnits);
  const leaving = yield* sortRuns(removed, budget, stepUnits);
  const merge: MergeState = {
    chunks: list.chunks,
    fresh,
    leaving,
    isGone,
    out: [],
    piece: [],
    c: 0,
    i: 0,
  };
  while (!mergeSlice(merge, budget)) {
    budget.left = stepUnits;
    yield;
  }
  return new SortedKeyList(merge.out);
}

/** Units of work left in the current step. */
interface Budget {
  left: number;
}

/**
 * `keys` in sorted runs (each key once within a run), ready to be read in order: one run sorted
 * in one piece when there are no steps, else runs of SORT_RUN_KEYS, one sort at a time.
 */
function* sortRuns(
  keys: readonly string[],
  budget: Budget,
  stepUnits: number,
): Generator<void, SortedRuns, void> {
  const runKeys = stepUnits === Infinity ? Math.max(keys.length, 1) : SORT_RUN_KEYS;
  const runs: string[][] = [];
  for (let start = 0; start < keys.length; start += runKeys) {
    const run = dropRepeats(keys.slice(start, start + runKeys).sort());
    runs.push(run);
    budget.left -= run.length * RUN_SORT_UNITS_PER_KEY;
    if (budget.left <= 0) {
      budget.left = stepUnits;
      yield;
    }
  }
  return new SortedRuns(runs);
}

/** A sorted array with each run of equal keys cut to one, in place. */
function dropRepeats(keys: string[]): string[] {
  let k = 0;
  for (let i = 0; i < keys.length; i++) if (k === 0 || keys[k - 1] !== keys[i]) keys[k++] = keys[i];
  keys.length = k;
  return keys;
}

/**
 * Sorted runs read as one sorted sequence of unique keys, through a binary heap of the runs'
 * next keys. Merging the runs into one array instead allocated arrays of every key, and each
 * such allocation is one piece of fresh memory (7-9 ms per 300,000 keys here).
 */
class SortedRuns {
  readonly #runs: (readonly string[])[];
  readonly #at: number[];
  /** Run numbers, a min-heap on each run's next key. */
  readonly #heap: number[] = [];
  /** What taking one key costs, in units: about one comparison per level of the heap. */
  readonly unitsPerKey: number;

  constructor(runs: (readonly string[])[]) {
    this.#runs = runs.filter((run) => run.length > 0);
    this.#at = this.#runs.map(() => 0);
    for (let n = 0; n < this.#runs.length; n++) this.#push(n);
    this.unitsPerKey = 1 + Math.ceil(Math.log2(Math.max(1, this.#runs.length)));
  }

  /** The next key, or undefined at the end. */
  peek(): string | undefined {
    return this.#heap.length === 0 ? undefined : this.#keyOf(this.#heap[0]);
  }

  /** Moves past the next key (in every run that holds it). */
  advance(): void {
    const key = this.peek();
    while (this.#heap.length > 0 && this.#keyOf(this.#heap[0]) === key) {
      const n = this.#heap[0];
      this.#at[n]++;
      if (this.#at[n] < this.#runs[n].length) this.#siftDown(0);
      else {
        const last = this.#heap.pop()!;
        if (this.#heap.length > 0) {
          this.#heap[0] = last;
          this.#siftDown(0);
        }
      }
    }
  }

  #keyOf(n: number): string {
    return this.#runs[n][this.#at[n]];
  }

  #push(n: number): void {
    const heap = this.#heap;
    let at = heap.push(n) - 1;
    while (at > 0) {
      const parent = (at - 1) >> 1;
      if (this.#keyOf(heap[parent]) <= this.#keyOf(n)) break;
      heap[at] = heap[parent];
      at = parent;
    }
    heap[at] = n;
  }

  #siftDown(at: number): void {
    const heap = this.#heap;
    const n = heap[at];
    const key = this.#keyOf(n);
    while (true) {
      let child = 2 * at + 1;
      if (child >= heap.length) break;
      if (child + 1 < heap.length && this.#keyOf(heap[child + 1]) < this.#keyOf(heap[child])) {
        child++;
      }
      if (key <= this.#keyOf(heap[child])) break;
      heap[at] = heap[child];
      at = child;
    }
    heap[at] = n;
  }
}

/** The first index at or after `from` whose key is not below `key`. */
function lowerBound(keys: readonly string[], key: string, from: number): number {
  let lo = from;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (keys[mid] < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The old chunks, the new keys and the collected keys being merged. */
interface MergeState {
  chunks: readonly (readonly string[])[];
  fresh: SortedRuns;
  leaving: SortedRuns;
  isGone: (key: string) => boolean;
  /** The new list's chunks so far. */
  out: (readonly string[])[];
  /** The chunk being filled. */
  piece: string[];
  /** Position in the old list: chunk c, key i. */
  c: number;
  i: number;
}

/**
 * Merges until the budget is spent; true when done. An old chunk that no change falls into is
 * passed on as it is when it starts at a chunk boundary of the new list; the others are copied
 * key by key into pieces of at most CHUNK_KEYS_MAX keys.
 */
function mergeSlice(s: MergeState, budget: Budget): boolean {
  const { chunks, fresh, leaving, isGone, out } = s;
  let { c, i, piece } = s;
  let units = Math.max(1, Math.floor(budget.left));
  let nextFresh = fresh.peek();
  while ((c < chunks.length || nextFresh !== undefined) && units > 0) {
    const chunk = c < chunks.length ? chunks[c] : undefined;
    if (chunk !== undefined && i === chunk.length) {
      // At the end of an old chunk: end the piece here unless it would be too small.
      if (piece.length >= CHUNK_KEYS_MIN) {
        out.push(piece);
        piece = [];
      }
      c++;
      i = 0;
      continue;
    }
    if (chunk !== undefined && i === 0 && piece.length === 0) {
      // Collected keys below this chunk and below the next new key are in neither.
      let nextLeaving = leaving.peek();
      while (
        nextLeaving !== undefined && nextLeaving < chunk[0] &&
        (nextFresh === undefined || nextLeaving < nextFresh)
      ) {
        leaving.advance();
        nextLeaving = leaving.peek();
        units -= leaving.unitsPerKey;
      }
      // A chunk below CHUNK_KEYS_MIN is passed on only when nothing changes after it: keys
      // that arrive one at a time at an end would otherwise each leave a chunk of their own.
      const last = chunk[chunk.length - 1];
      const changeWithin = (nextFresh !== undefined && nextFresh <= last) ||
        (nextLeaving !== undefined && nextLeaving <= last);
      const changeAfter = nextFresh !== undefined || nextLeaving !== undefined;
      if (!changeWithin && (chunk.length >= CHUNK_KEYS_MIN || !changeAfter)) {
        out.push(chunk);
        c++;
        units--;
        continue;
      }
    }
    // The smaller of the next old and next new key, once; out if it was collected and is gone.
    let key: string;
    if (nextFresh !== undefined && (chunk === undefined || nextFresh <= chunk[i])) {
      key = nextFresh;
      fresh.advance();
      nextFresh = fresh.peek();
      units -= fresh.unitsPerKey;
      if (chunk !== undefined && chunk[i] === key) i++;
    } else key = chunk![i++]; // the loop runs while the old list or the new keys have more
    let nextLeaving = leaving.peek();
    while (nextLeaving !== undefined && nextLeaving < key) {
      leaving.advance();
      nextLeaving = leaving.peek();
      units -= leaving.unitsPerKey;
    }
    units--;
    if (nextLeaving === key) {
      units -= GONE_CHECK_UNITS + leaving.unitsPerKey;
      if (isGone(key)) continue;
    }
    piece.push(key);
    if (piece.length === CHUNK_KEYS_MAX) {
      out.push(piece.slice(0, SORTED_CHUNK_KEYS));
      piece = piece.slice(SORTED_CHUNK_KEYS);
    }
  }
  const done = c === chunks.length && nextFresh === undefined;
  if (done && piece.length > 0) {
    out.push(piece);
    piece = [];
  }
  budget.left = units;
  s.c = c;
  s.i = i;
  s.piece = piece;
  return done;
}
