/**
 * The write-ahead log: segments on disk, group commit, reads by LSN, retention.
 *
 * Group commit never idles: an append queues its framed record; if no flush is running one
 * starts at once, and while a flush runs (one write, one fdatasync) new appends queue up and
 * go out together in the next one. One client pays one fsync; fifty share one. A batch holds
 * at most `batchEntriesMax` entries and `batchBytesMax` bytes, and no timer ever delays it.
 * A peer's entries (appended as replicated) may fill it further, up to
 * `replicatedBatchEntriesMax`: a local entry joins a batch only among its first
 * `batchEntriesMax` entries, a replicated one among its first `replicatedBatchEntriesMax`.
 * Every caller is answered only after the fdatasync that covers its entry. With `inlineSync`
 * (what `shanghai serve` runs) the fdatasync runs on the JavaScript thread, and each batch is
 * cut in a fresh macrotask, after the event loop has read what arrived during the last sync.
 *
 * The active segment is kept preallocated: zeros, written and fdatasync'ed from a second file
 * handle in the background, run up to `preallocateBytes` ahead of the last record. A batch then
 * overwrites blocks the file already owns, so its fdatasync flushes data only and ext4 has no
 * size change to journal. The zero writer never touches bytes a batch may write: a batch that
 * would run past the prepared zeros waits for the zero write in flight first. Recovery reads a
 * zero record header followed by nothing but zeros as the end of the data; a sealed segment is
 * truncated to its records before the next one is created.
 *
 * A failed write or sync leaves the file in an unknown state, so the WAL fails stop: every
 * pending and later append is rejected until the process restarts and recovery repairs the tail.
 *
 * @module
 */
import { yieldToEventLoop } from "../../common/event_loop.ts";
import { type Clock, systemClock } from "../../common/clock.ts";
import {
  decodeEntry,
  directEntryBytes,
  encodeEntry,
  type Entry,
  peekEntryIdentity,
  writeEntryDirect,
} from "../../common/entry.ts";
import {
  ClosedError,
  CorruptionError,
  OverloadedError,
  ShanghaiError,
} from "../../common/errors.ts";
import { invariant } from "../../common/invariant.ts";
import {
  BATCH_BYTES_DEFAULT,
  BATCH_ENTRIES_DEFAULT,
  BATCH_ENTRIES_MAX,
  BATCH_ENTRIES_REPLICATED_DEFAULT,
  PENDING_BYTES_MAX,
  PENDING_ENTRIES_MAX,
  READ_BYTES_MAX,
  READ_ENTRIES_MAX,
  RECORD_BYTES_MAX,
  RECORD_HEADER_BYTES,
  SEGMENT_BYTES_DEFAULT,
  SEGMENT_HEADER_BYTES,
  SPARSE_INDEX_INTERVAL_BYTES,
  WAL_DROP_BEHIND_BYTES_MAX,
  WAL_DROP_BEHIND_STEP_BYTES,
  WAL_GATHER_BATCH_ENTRIES,
  WAL_GATHER_MICROS_DEFAULT,
  WAL_GATHER_MICROS_MAX,
  WAL_PREALLOCATE_BYTES_DEFAULT,
  WAL_PREALLOCATE_BYTES_MAX,
  WAL_READ_CHUNK_BYTES,
  WAL_READ_HANDLES_MAX,
  WAL_READ_HINTS_MAX,
  WAL_READ_SYNC_BYTES,
  WAL_RECOVERY_PIECE_BYTES,
} from "../../common/limits.ts";
import { setImmediate } from "node:timers";
import { crc32 } from "../../common/crc32.ts";
import { readFully, readWholeFile, syncDir, writeAll, writeAllSync } from "../durable_fs.ts";
import { LibcPageCacheAdvisor, type PageCacheAdvisor } from "./page_cache.ts";
import { readRecord } from "./record.ts";
import {
  type IndexPoint,
  type ScanOptions,
  scanSegment,
  type SegmentScan,
  SegmentStreamScan,
} from "./recovery.ts";
import {
  decodeSegmentHeader,
  encodeSegmentHeader,
  parseSegmentFileName,
  SEGMENT_FORMAT_VERSION,
  segmentFileName,
} from "./segment.ts";

/**
 * Sees a batch written to the WAL before its fdatasync (WalOptions.onWritten); answers true to
 * let queued microtasks run before the sync. `records()` gives the entries' records as written,
 * and only during the call.
 */
export type WrittenListener = (entries: readonly Entry[], records: () => Uint8Array[]) => boolean;

export interface WalOptions {
  segmentBytesMax?: number;
  batchEntriesMax?: number;
  /** How far replicated appends may fill a batch (never below batchEntriesMax; see above). */
  replicatedBatchEntriesMax?: number;
  batchBytesMax?: number;
  /** Zeros laid out ahead of the active segment's last record; 0 turns preallocation off. */
  preallocateBytes?: number;
  /** Segments wholly below this LSN are trusted after a header check (a snapshot covers them). */
  verifyFromLsn?: number;
  /**
   * The log goes on at this LSN or later: an embedder's state (a snapshot) already covers every
   * entry before it. With no segments on disk the log starts here (after a snapshot or a
   * restore). When the segments on disk end earlier (a disk that lost records it had
   * made durable, or a WAL directory restored from an older copy), every one of them is wholly
   * covered: they are removed, `onRepair` hears why, and the log starts anew here. Left to
   * number on from what was kept, new entries would take LSNs the embedder's state already
   * counts, and its next recovery (replaying from past that state) would skip them.
   */
  nextLsnAtLeast?: number;
  clock?: Clock;
  /** Called with each durable batch, in LSN order, before its writers are answered. */
  onDurable?: (entries: readonly Entry[], info: BatchInfo) => void;
  /**
   * Called with each batch once it is written to the file and before its fdatasync, in LSN
   * order: replication ships entries from here, so that a peer's sync overlaps this node's
   * (see docs/ARCHITECTURE.md, "Shipping before the sync"). Nothing is durable yet and no
   * writer has been answered. Answering true asks the WAL to let WRITTEN_MICROTASK_TURNS
   * microtasks run before an inline fdatasync, so that what the callback started (replication's
   * pump, the transport's write, whose syscall Deno makes at once) runs before the thread stands
   * still in the sync; a thread-pool sync lets it run anyway. `records()` gives each entry's
   * record (length, CRC, encoding) as written, in a copy made on the first call: replication
   * ships those bytes instead of encoding and checksumming every entry again.
   */
  onWritten?: WrittenListener;
  /**
   * Synced data more than this many bytes behind the active segment's end is dropped from the
   * OS page cache, in steps of at least WAL_DROP_BEHIND_STEP_BYTES, and a sealed segment whole
   * (see page_cache.ts for why); 0 or undefined: never.
   */
  dropBehindBytes?: number;
  /** What drops the pages (default: libc's posix_fadvise); for tests. */
  pageCache?: PageCacheAdvisor;
  /** Called once if pages cannot be dropped here, with why (the WAL works on without). */
  onPageCacheUnavailable?: (reason: string) => void;
  /** Called once for each torn tail cut or half-created segment dropped during recovery. */
  onRepair?: (message: string) => void;
  /**
   * Called when laying zeros ahead of the writer fails (the zero handle cannot be opened, or
   * its write or fdatasync fails). Preallocation is then off until the WAL is reopened, so
   * this is called at most once per open; appends go on without it.
   */
  onPreallocateFailed?: (error: unknown) => void;
  /**
   * Call fdatasync on the JavaScript thread instead of Deno's blocking-task thread (default
   * false; `shanghai serve` turns it on unless `--wal-sync thread`). It saves what an
   * asynchronous sync costs per batch: a duplicated file handle, two thread hops and their
   * wake-ups (70-170 µs on our machines). The price: the event loop stands still while the
   * disk syncs, so nothing else in the process runs for that long (a read waits for the sync
   * in progress, as in Redis with `appendfsync always`).
   *
   * Batches still gather: each starts from a macrotask (`setImmediate`), which runs only after
   * the event loop has taken every I/O completion that is ready, so the requests that arrived
   * during the last sync are all read, and their appends queued, before the next batch is cut.
   * (Starting the batch at the first append instead left HTTP clients' writes in batches of
   * one: the next request could not be read before the sync it would have joined began.)
   */
  inlineSync?: boolean;
  /** Called right before each batch's fdatasync (the node's idle poller, src/node/idle_poll.ts). */
  beforeSync?: () => void;
  /**
   * How many writers answered a moment ago are expected to append again soon: `shanghai serve`
   * counts its HTTP connections answered a write within the last millisecond and not yet back
   * with their next request. With `inlineSync`, a batch of fewer than WAL_GATHER_BATCH_ENTRIES
   * local entries waits for them, for at most `gatherMicros`, turning the event loop (which
   * reads their requests) rather than sleeping; a batch holding entries from peers never waits.
   * Without it (the default) batches never wait. Why: at 10 clients the writers otherwise
   * settle into two halves that take turns at the disk, each batch paying a whole fdatasync for
   * half of them (docs/BENCHMARKS.md, session 30).
   */
  expectedWriters?: () => number;
  /** The longest such wait, in µs (default WAL_GATHER_MICROS_DEFAULT; 0: never wait). */
  gatherMicros?: number;
}

export interface BatchInfo {
  bytes: number;
  entries: number;
  writeMs: number;
  syncMs: number;
  /**
   * How long the batch waited for writers expected back before it was cut (see
   * WalOptions.expectedWriters); 0 when it did not wait, above 0 whenever it did.
   */
  gatherMs: number;
}

/** An entry as handed to append: the WAL assigns the LSN. */
export type EntryInput = Omit<Entry, "lsn">;

/**
 * An opaque `append` entry (no key, no content type): what an embedder that uses the WAL as a
 * plain log appends. `seq` is the writer's own dense sequence; `hlc` orders entries of
 * different origins and defaults to `seq`.
 */
export function appendEntry(
  value: Uint8Array,
  id: { origin: string; seq: number; hlc?: number },
): EntryInput {
  return {
    origin: id.origin,
    seq: id.seq,
    hlc: id.hlc ?? id.seq,
    op: "append",
    key: "",
    value,
    contentType: "",
    prevHlc: 0,
    prevOrigin: "",
  };
}

/** A read reached below the oldest retained segment. */
export class LsnCompactedError extends ShanghaiError {
  override name = "LsnCompactedError";
  constructor(readonly lsn: number, readonly firstLsn: number) {
    super(
      "not_found",
      `Cannot read LSN ${lsn}: retention removed it; the log starts at ${firstLsn}`,
    );
  }
}

export interface SegmentInfo {
  fileName: string;
  firstLsn: number;
  lastLsn: number;
  bytes: number;
}

interface Segment {
  fileName: string;
  path: string;
  firstLsn: number;
  /** Last durable LSN held; firstLsn - 1 while empty. */
  lastLsn: number;
  bytes: number;
  /** Undefined until the segment has been scanned (lazily, for segments recovery skipped). */
  index?: IndexPoint[];
}

/**
 * Buffers that {@link Wal.readFramed} reads its chunks into, handed out in order from the
 * start at each read and kept for the next: the records it returns are views into them, valid
 * until the next read with the same buffers. A leader keeps one set per follower (its reads
 * for one follower come one at a time, and it copies what it ships before the next) because a
 * new buffer per chunk was fresh memory each time: a catch-up's leader took about one page
 * fault per 4 KiB it shipped, and a first touch costs about 12 µs on our VMs
 * (docs/BENCHMARKS.md, session 40). At most `keep` buffers are kept; a longer read takes
 * fresh ones beyond them.
 */
export class ReadBuffers {
  readonly #kept: Uint8Array[] = [];
  readonly #keep: number;
  #next = 0;

  constructor(keep = WAL_READ_BUFFERS_PER_READER) {
    this.#keep = keep;
  }

  /** Starts a read: the buffers are handed out again from the first. */
  reset(): void {
    this.#next = 0;
  }

  /** A buffer of at least `bytes` (a view of that length) not handed out since reset(). */
  take(bytes: number): Uint8Array {
    const at = this.#next++;
    const kept = this.#kept[at];
    if (kept !== undefined && kept.length >= bytes) return kept.subarray(0, bytes);
    const fresh = new Uint8Array(Math.max(bytes, WAL_READ_CHUNK_BYTES));
    if (at < this.#keep) this.#kept[at] = fresh;
    return fresh.subarray(0, bytes);
  }

  /** Bytes held between reads. */
  get bytesKept(): number {
    return this.#kept.reduce((sum, b) => sum + b.length, 0);
  }
}

/** A WAL record as {@link Wal.readFramed} returns it. */
export interface FramedRecord {
  lsn: number;
  origin: string;
  seq: number;
  /** `length | CRC | entry`, checked. */
  frame: Uint8Array;
}

interface Pending {
  entry: Entry;
  /**
   * The encoded entry when it had to go through cbor-x; undefined for the common entry, which
   * is encoded straight into the batch buffer at flush (no allocation per entry).
   */
  data: Uint8Array | undefined;
  /** Framed size: RECORD_HEADER_BYTES + the encoded entry. */
  frameBytes: number;
  /**
   * Came from a peer (appendRemote), not from a writer of this node: a batch then takes it
   * among its first replicatedBatchEntriesMax entries instead of batchEntriesMax (see the
   * module), and never waits for expected writers.
   */
  replicated: boolean;
  resolve: (lsn: number) => void;
  reject: (error: unknown) => void;
}

/** A written and synced batch: its figures, and its entries when onWritten took them. */
interface WrittenBatch {
  info: BatchInfo;
  entries: readonly Entry[] | undefined;
}

/** Microtask turns the flush loop yields after answering, for answered writers to append again. */
const ANSWER_TICKS = 4;

/**
 * Microtask turns an inline sync waits after onWritten asked for them: enough for replication
 * to pump its streams (one turn), cut a batch from its tail cache and for the transport to
 * write it (four turns of coalescing, src/cluster/tcp_transport.ts), with room to spare. Not a
 * macrotask: a turn of the event loop would also read and handle every request that arrived,
 * all of it before this batch's sync (measured worse in session 27). A frame queued behind a
 * socket write still in flight goes out after the sync, as it did before.
 */
const WRITTEN_MICROTASK_TURNS = 12;

/**
 * Most event-loop turns one wait for expected writers takes (WalOptions.expectedWriters): an
 * idle turn takes about 2 µs here (1,000 `setImmediate` turns in 1.7-2.1 ms), so gatherMicros
 * ends a wait first; this bounds it where the clock stands still.
 */
const GATHER_TURNS_MAX = 1000;

/**
 * Resolves in a macrotask that runs after the event loop has handled every I/O completion
 * ready now (Node's `setImmediate` phase, which Deno runs after its poll for I/O). A timer
 * would not do: `setTimeout(0)` waits about a millisecond here.
 */
function nextMacrotask(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Chunk buffers a WAL keeps for `read` calls (each holds one while it runs, and reads every
 * chunk into it: the entries it decodes copy what they keep): a restart's replay reads its
 * tail 256 KiB at a time, and a new buffer for each chunk cost first touches of fresh memory
 * (about 3 ms per MiB on our VMs). `readFramed` returns views into its chunks, so it reads
 * into a {@link ReadBuffers} its caller owns instead.
 */
const WAL_READ_SCRATCH_KEPT = 2;
/**
 * Chunk buffers a {@link ReadBuffers} keeps: 8 of WAL_READ_CHUNK_BYTES (2 MiB) cover a leader's
 * read of 800 entries of 1 KiB (REPL_BATCH_ENTRIES_DEFAULT times READ_BATCHES_MAX) twice over.
 */
const WAL_READ_BUFFERS_PER_READER = 8;

/** Batches up to this size reuse one buffer (the write copies it before returning). */
const BATCH_BUFFER_KEEP_BYTES = 4 * 1024 * 1024;

let zeroBuffer = new Uint8Array(0);

/** `length` zero bytes from one shared buffer (never written to), so preallocation allocates once. */
function zeros(length: number): Uint8Array {
  if (zeroBuffer.length < length) zeroBuffer = new Uint8Array(length);
  return zeroBuffer.subarray(0, length);
}

/**
 * The file at `path` from `offset`, read into `into` (up to its length) on the JavaScript
 * thread. Scans read records this way: records lately written are in the page cache, where a
 * 256 KiB read costs tens of microseconds, while each awaited file operation costs two thread
 * hops. With three awaited operations per chunk (open, seek, read), about 1.5 ms each under the
 * load, a leader serving a follower's catch-up spent about half its time reading, and that
 * paced the catch-up. An uncached segment holds the event loop for the disk's time instead, so
 * scans let the loop run after every WAL_READ_SYNC_BYTES.
 */
function readAt(path: string, offset: number, into: Uint8Array): Uint8Array {
  const file = Deno.openSync(path, { read: true });
  try {
    return readFileAt(file, offset, into);
  } finally {
    file.close();
  }
}

/**
 * {@link scanSegment}'s verdict on the segment file at `path` and the file's size. A whole
 * segment is read piece by piece through one buffer (see {@link SegmentStreamScan}); one that
 * is not whole is read again into one buffer and scanned there, which decides what its damage
 * means. `pieceBytes` only sets the first piece's size (tests make it small).
 */
export function scanSegmentFile(
  path: string,
  options: ScanOptions,
  pieceBytes: number = WAL_RECOVERY_PIECE_BYTES,
): { scan: SegmentScan; fileBytes: number } {
  const streaming = new SegmentStreamScan(options);
  const file = Deno.openSync(path, { read: true });
  let scan: SegmentScan | undefined;
  let fileBytes = 0;
  try {
    let buffer = new Uint8Array(pieceBytes);
    let filled = 0;
    let used: number | undefined = 0;
    while (used !== undefined) {
      if (filled === buffer.length) {
        // A record longer than the buffer: grow it to the record's size at most.
        const grown = new Uint8Array(
          Math.min(
            2 * buffer.length,
            SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES + RECORD_BYTES_MAX,
          ),
        );
        if (grown.length === buffer.length) break;
        grown.set(buffer);
        buffer = grown;
      }
      const n = file.readSync(buffer.subarray(filled));
      if (n === null) {
        scan = streaming.finish(buffer.subarray(0, filled));
        break;
      }
      filled += n;
      fileBytes += n;
      used = streaming.push(buffer.subarray(0, filled));
      if (used !== undefined && used > 0) {
        buffer.copyWithin(0, used, filled);
        filled -= used;
      }
    }
  } finally {
    file.close();
  }
  if (scan !== undefined) return { scan, fileBytes };
  const bytes = readWholeFile(path);
  return { scan: scanSegment(bytes, options), fileBytes: bytes.length };
}

/** Fills `into` from `offset` of `file`; returns the part filled (shorter at the file's end). */
function readFileAt(file: Deno.FsFile, offset: number, into: Uint8Array): Uint8Array {
  file.seekSync(offset, Deno.SeekMode.Start);
  return readFully(file, into);
}

/** The answer to every entry of an appendBatch but the last, whose answer covers them. */
function ignoreLsn(_lsn: number): void {}

/** How many points of `index` (ascending, distinct LSNs) are at or below `lsn`. */
function pointsAtOrBelow(index: IndexPoint[], lsn: number): number {
  let lo = 0;
  let hi = index.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (index[mid].lsn <= lsn) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The last index point at or below `lsn`, or undefined. */
function floorPoint(index: IndexPoint[], lsn: number): IndexPoint | undefined {
  return index[pointsAtOrBelow(index, lsn) - 1];
}

/** The first index point at or after `lsn` (LSNs are integers), or undefined. */
function ceilPoint(index: IndexPoint[], lsn: number): IndexPoint | undefined {
  return index[pointsAtOrBelow(index, lsn - 1)];
}

export class Wal {
  readonly dir: string;
  readonly #segmentBytesMax: number;
  readonly #batchEntriesMax: number;
  readonly #replicatedBatchEntriesMax: number;
  readonly #batchBytesMax: number;
  readonly #clock: Clock;
  readonly #onDurable?: WalOptions["onDurable"];
  readonly #onWritten?: WalOptions["onWritten"];
  // Invariant: #writtenLsn >= #durableLsn; entries up to it are in the file, maybe not synced.
  #writtenLsn: number;
  readonly #onPreallocateFailed?: WalOptions["onPreallocateFailed"];
  readonly #inlineSync: boolean;
  // Invariant: sorted by firstLsn, contiguous (each firstLsn = previous lastLsn + 1), last active.
  #segments: Segment[];
  #file: Deno.FsFile;
  #preallocateBytes: number;
  /** Second handle on the active segment, for laying out zeros ahead of the writer. */
  #zeroFile: Deno.FsFile | undefined;
  // Invariant: every byte of the active segment below zeroedEnd is allocated and durable
  // (records or zeros); batches write below it unless no zero write is in flight.
  #zeroedEnd: number;
  #zeroing: Promise<void> | undefined;
  // Invariant: durableLsn <= nextLsn - 1; everything <= durableLsn is fsynced.
  #nextLsn: number;
  #durableLsn: number;
  #queue: Pending[] = [];
  #batchBuffer = new Uint8Array(0);
  /**
   * Read handles by segment, least recently used first. A leader feeding a catch-up reads
   * a batch at a time; opening and closing the file for each read was 2.6% of its time.
   */
  #readers = new Map<Segment, Deno.FsFile>();
  /** Chunk buffers of finished `read` calls, for the next (see WAL_READ_SCRATCH_KEPT). */
  #readScratch: Uint8Array[] = [];
  /**
   * Where recent scans stopped: the next record's LSN and offset in its segment. A stream
   * reads on from where its last read ended, and without this each read started at the index
   * point below it, up to SPARSE_INDEX_INTERVAL_BYTES earlier, and read its way forward.
   */
  #readHints: { segment: Segment; lsn: number; offset: number }[] = [];
  #queueBytes = 0;
  readonly #expectedWriters: (() => number) | undefined;
  readonly #beforeSync: (() => void) | undefined;
  readonly #gatherMs: number;
  readonly #dropBehindBytes: number;
  readonly #pageCache: PageCacheAdvisor | undefined;
  #onPageCacheUnavailable: ((reason: string) => void) | undefined;
  /**
   * Segments whose synced pages may still be in the page cache, oldest first, the active one
   * last, each with how far it was dropped from its start.
   */
  #cachedSegments: { segment: Segment; droppedTo: number }[] = [];
  #flushing: Promise<void> | undefined;
  #failed: unknown;
  #closed = false;

  private constructor(
    dir: string,
    segments: Segment[],
    file: Deno.FsFile,
    fileBytes: number,
    options: WalOptions,
  ) {
    this.dir = dir;
    this.#segments = segments;
    this.#file = file;
    this.#zeroedEnd = fileBytes;
    this.#preallocateBytes = options.preallocateBytes ?? WAL_PREALLOCATE_BYTES_DEFAULT;
    this.#segmentBytesMax = options.segmentBytesMax ?? SEGMENT_BYTES_DEFAULT;
    this.#batchEntriesMax = options.batchEntriesMax ?? BATCH_ENTRIES_DEFAULT;
    this.#replicatedBatchEntriesMax = Math.max(
      this.#batchEntriesMax,
      options.replicatedBatchEntriesMax ?? BATCH_ENTRIES_REPLICATED_DEFAULT,
    );
    this.#batchBytesMax = options.batchBytesMax ?? BATCH_BYTES_DEFAULT;
    this.#clock = options.clock ?? systemClock;
    this.#onDurable = options.onDurable;
    this.#onWritten = options.onWritten;
    this.#onPreallocateFailed = options.onPreallocateFailed;
    this.#inlineSync = options.inlineSync ?? false;
    this.#expectedWriters = options.expectedWriters;
    this.#beforeSync = options.beforeSync;
    this.#gatherMs = (options.gatherMicros ?? WAL_GATHER_MICROS_DEFAULT) / 1000;
    this.#dropBehindBytes = options.dropBehindBytes ?? 0;
    this.#pageCache = this.#dropBehindBytes > 0
      ? options.pageCache ?? new LibcPageCacheAdvisor()
      : undefined;
    this.#onPageCacheUnavailable = options.onPageCacheUnavailable;
    const active = segments[segments.length - 1];
    if (this.#pageCache !== undefined) this.#cachedSegments.push({ segment: active, droppedTo: 0 });
    this.#durableLsn = active.lastLsn;
    this.#writtenLsn = active.lastLsn;
    this.#nextLsn = active.lastLsn + 1;
  }

  /** Opens (creating if needed) the WAL in `dir`, recovering its tail. */
  static async open(dir: string, options: WalOptions = {}): Promise<Wal> {
    const batchEntriesMax = options.batchEntriesMax ?? BATCH_ENTRIES_DEFAULT;
    invariant(
      batchEntriesMax >= 1 && batchEntriesMax <= BATCH_ENTRIES_MAX,
      "batchEntriesMax out of range",
    );
    const replicatedMax = options.replicatedBatchEntriesMax ?? BATCH_ENTRIES_REPLICATED_DEFAULT;
    invariant(
      replicatedMax >= 1 && replicatedMax <= BATCH_ENTRIES_MAX,
      "replicatedBatchEntriesMax out of range",
    );
    const preallocateBytes = options.preallocateBytes ?? WAL_PREALLOCATE_BYTES_DEFAULT;
    invariant(
      preallocateBytes >= 0 && preallocateBytes <= WAL_PREALLOCATE_BYTES_MAX,
      "preallocateBytes out of range",
    );
    const gatherMicros = options.gatherMicros ?? WAL_GATHER_MICROS_DEFAULT;
    invariant(
      gatherMicros >= 0 && gatherMicros <= WAL_GATHER_MICROS_MAX,
      "gatherMicros out of range",
    );
    const dropBehindBytes = options.dropBehindBytes ?? 0;
    invariant(
      Number.isSafeInteger(dropBehindBytes) && dropBehindBytes >= 0 &&
        dropBehindBytes <= WAL_DROP_BEHIND_BYTES_MAX,
      "dropBehindBytes out of range",
    );
    await Deno.mkdir(dir, { recursive: true });
    const names: { name: string; firstLsn: number }[] = [];
    for await (const item of Deno.readDir(dir)) {
      const firstLsn = item.isFile ? parseSegmentFileName(item.name) : undefined;
      if (firstLsn !== undefined) names.push({ name: item.name, firstLsn });
    }
    names.sort((a, b) => a.firstLsn - b.firstLsn);
    const segments: Segment[] = [];
    // Size of the last segment's file: its records plus any preallocated zeros after them.
    let lastFileBytes = 0;
    const verifyFromLsn = options.verifyFromLsn ?? 0;
    // A valid record inside one batch starts less than a batch after a damaged one: the batch
    // may be the unsynced one a crash tore. Anything further on was durable once.
    const tornWindowBytes = options.batchBytesMax ?? BATCH_BYTES_DEFAULT;
    for (let i = 0; i < names.length; i++) {
      const { name, firstLsn } = names[i];
      const path = `${dir}/${name}`;
      const isLast = i === names.length - 1;
      const nextFirst = isLast ? undefined : names[i + 1].firstLsn;
      const expectedFirstLsn = segments.length > 0
        ? segments[segments.length - 1].lastLsn + 1
        : undefined;
      if (nextFirst !== undefined && nextFirst - 1 < verifyFromLsn) {
        // Wholly covered by a snapshot: check the header only, index it on first read.
        const stat = await Deno.stat(path);
        const head = decodeSegmentHeader(readAt(path, 0, new Uint8Array(SEGMENT_HEADER_BYTES)));
        if (!head.ok) {
          throw new CorruptionError(
            name,
            0,
            head.problem,
            "Move the damaged segment out and restart",
          );
        }
        if (head.header.firstLsn !== firstLsn) {
          throw new CorruptionError(
            name,
            32,
            `header says LSN ${head.header.firstLsn}`,
            "Rename or remove the segment",
          );
        }
        segments.push({ fileName: name, path, firstLsn, lastLsn: nextFirst - 1, bytes: stat.size });
        continue;
      }
      const { scan, fileBytes } = scanSegmentFile(path, {
        fileName: name,
        isLast,
        expectedFirstLsn,
        recordBytesMax: RECORD_BYTES_MAX,
        tornWindowBytes,
        indexIntervalBytes: SPARSE_INDEX_INTERVAL_BYTES,
      });
      if (scan.kind === "drop") {
        options.onRepair?.(`Dropped WAL segment "${name}": ${scan.reason}`);
        await Deno.remove(path);
        await syncDir(dir);
        continue;
      }
      if (scan.header.firstLsn !== firstLsn) {
        throw new CorruptionError(
          name,
          32,
          `header says LSN ${scan.header.firstLsn}`,
          "Rename or remove the segment",
        );
      }
      if (nextFirst !== undefined && scan.lastLsn !== nextFirst - 1) {
        throw new CorruptionError(
          name,
          scan.validBytes,
          `segment ends at LSN ${scan.lastLsn} but the next segment starts at ${nextFirst}`,
          "A segment is missing or damaged; move this segment and later ones out and restart",
        );
      }
      lastFileBytes = fileBytes;
      if (scan.tornTail !== undefined) {
        options.onRepair?.(`Truncated torn tail of WAL segment "${name}": ${scan.tornTail}`);
        await Deno.truncate(path, scan.validBytes);
        lastFileBytes = scan.validBytes;
      }
      segments.push({
        fileName: name,
        path,
        firstLsn,
        lastLsn: scan.lastLsn,
        bytes: scan.validBytes,
        index: scan.index,
      });
    }
    const nextLsnAtLeast = Math.max(1, options.nextLsnAtLeast ?? 1);
    const keptLastLsn = segments.length > 0 ? segments[segments.length - 1].lastLsn : undefined;
    if (keptLastLsn !== undefined && keptLastLsn + 1 < nextLsnAtLeast) {
      for (const segment of segments.splice(0)) await Deno.remove(segment.path);
      await syncDir(dir);
      options.onRepair?.(
        `The WAL ends at LSN ${keptLastLsn} but must go on at ${nextLsnAtLeast} (a snapshot covers everything before it): the disk lost records it had made durable, or the WAL directory is older than the data directory. Removed its segments, which that snapshot covers, and started the log at LSN ${nextLsnAtLeast}; entries after the snapshot that the disk lost can come back only from peers`,
      );
    }
    let file: Deno.FsFile;
    if (segments.length === 0) {
      const created = await Wal.#createSegment(dir, nextLsnAtLeast, options.clock ?? systemClock);
      segments.push(created.segment);
      file = created.file;
      lastFileBytes = SEGMENT_HEADER_BYTES;
    } else {
      const active = segments[segments.length - 1];
      file = await Deno.open(active.path, { write: true, read: true });
      await file.seek(active.bytes, Deno.SeekMode.Start);
      if (active.index === undefined) active.index = Wal.#scanForIndex(active).index;
    }
    const wal = new Wal(dir, segments, file, lastFileBytes, options);
    wal.#preallocate();
    return wal;
  }

  static async #createSegment(
    dir: string,
    firstLsn: number,
    clock: Clock,
  ): Promise<{ segment: Segment; file: Deno.FsFile }> {
    const fileName = segmentFileName(firstLsn);
    const path = `${dir}/${fileName}`;
    const file = await Deno.open(path, { write: true, read: true, createNew: true });
    await writeAll(
      file,
      encodeSegmentHeader({
        version: SEGMENT_FORMAT_VERSION,
        uuid: crypto.randomUUID(),
        createdMs: clock.nowMs(),
        firstLsn,
      }),
    );
    await file.sync();
    await syncDir(dir);
    return {
      segment: {
        fileName,
        path,
        firstLsn,
        lastLsn: firstLsn - 1,
        bytes: SEGMENT_HEADER_BYTES,
        index: [],
      },
      file,
    };
  }

  static #scanForIndex(segment: Segment): { index: IndexPoint[] } {
    const { scan } = scanSegmentFile(segment.path, {
      fileName: segment.fileName,
      isLast: false,
      recordBytesMax: RECORD_BYTES_MAX,
      tornWindowBytes: 0,
      indexIntervalBytes: SPARSE_INDEX_INTERVAL_BYTES,
    });
    invariant(scan.kind === "ok", "A sealed segment cannot be dropped");
    return { index: scan.index };
  }

  /** LSN of the newest durable entry (0 when the log is empty). */
  get lastLsn(): number {
    return this.#durableLsn;
  }

  /**
   * LSN of the newest entry written to the file, durable or not (onWritten has seen it).
   * Never read entries past lastLsn from the file: they may not survive a crash.
   */
  get writtenLsn(): number {
    return this.#writtenLsn;
  }

  /** LSN of the oldest entry still held. */
  get firstLsn(): number {
    return this.#segments[0].firstLsn;
  }

  get bytesOnDisk(): number {
    return this.#segments.reduce((sum, s) => sum + s.bytes, 0);
  }

  /** Entries queued behind the flush in flight. */
  get pendingEntries(): number {
    return this.#queue.length;
  }

  /** Why the WAL stopped taking writes, if it did. */
  get failure(): unknown {
    return this.#failed;
  }

  segments(): SegmentInfo[] {
    return this.#segments.map(({ fileName, firstLsn, lastLsn, bytes }) => ({
      fileName,
      firstLsn,
      lastLsn,
      bytes,
    }));
  }

  /**
   * Appends one entry; resolves with its LSN once it is durable. The caller validates the
   * entry's size first (the store does): an entry over RECORD_BYTES_MAX is a programmer error.
   * The entry's `value` is encoded when its batch is written, so leave it unchanged until the
   * append settles (the key-value view keeps the same bytes afterwards anyway).
   *
   * `replicated` marks a peer's entry, which may fill a batch up to replicatedBatchEntriesMax.
   */
  append(input: EntryInput, replicated = false): Promise<number> {
    const refusal = this.#refusal();
    if (refusal !== undefined) return Promise.reject(refusal);
    return new Promise<number>((resolve, reject) => {
      this.#enqueue(input, replicated, resolve, reject);
    });
  }

  /**
   * Appends entries in order, as `append` does each; resolves with the last one's LSN once
   * all are durable. One promise for the lot: a follower appends a peer's batches this way,
   * and a promise with its two callbacks per entry was a measurable part of its work. All or
   * nothing at the door: a refused call queues none of them.
   */
  appendBatch(inputs: readonly EntryInput[], replicated = false): Promise<number> {
    const refusal = this.#refusal();
    if (refusal !== undefined) return Promise.reject(refusal);
    if (inputs.length === 0) return Promise.resolve(this.#nextLsn - 1);
    return new Promise<number>((resolve, reject) => {
      // Batches are answered in LSN order, so the last entry's answer covers the others;
      // any entry's failure rejects the lot (a promise settles once).
      const last = inputs.length - 1;
      for (let i = 0; i < last; i++) this.#enqueue(inputs[i], replicated, ignoreLsn, reject);
      this.#enqueue(inputs[last], replicated, resolve, reject);
    });
  }

  /** Why an append cannot be taken now, or undefined. */
  #refusal(): Error | undefined {
    if (this.#closed) return new ClosedError("the WAL");
    if (this.#failed !== undefined) return this.#failedError();
    if (this.#queue.length >= PENDING_ENTRIES_MAX || this.#queueBytes >= PENDING_BYTES_MAX) {
      return new OverloadedError(
        "overloaded",
        `Cannot append: ${this.#queue.length} entries already wait for the disk; retry later`,
      );
    }
    return undefined;
  }

  /** Numbers one entry and queues it behind the flush in flight, starting one if none runs. */
  #enqueue(
    input: EntryInput,
    replicated: boolean,
    resolve: (lsn: number) => void,
    reject: (error: unknown) => void,
  ): void {
    const entry: Entry = { ...input, lsn: this.#nextLsn };
    const directBytes = directEntryBytes(entry);
    const data = directBytes < 0 ? encodeEntry(entry) : undefined;
    const entryBytes = data?.length ?? directBytes;
    invariant(entryBytes <= RECORD_BYTES_MAX, "Entry exceeds RECORD_BYTES_MAX");
    const frameBytes = RECORD_HEADER_BYTES + entryBytes;
    this.#nextLsn++;
    this.#queue.push({ entry, data, frameBytes, replicated, resolve, reject });
    this.#queueBytes += frameBytes;
    this.#flushing ??= this.#inlineSync ? this.#flushLoopInline() : this.#flushLoop();
  }

  #failedError(): ShanghaiError {
    return new ShanghaiError(
      "io",
      `Cannot append: the WAL stopped after a failed write or sync (${this.#failed}); restart the node to recover`,
      {
        cause: this.#failed,
      },
    );
  }

  /**
   * Takes batches off the queue while there are any. When a batch is durable and at least as
   * many entries wait as it holds, the next batch is written and its fdatasync started before
   * the durable batch's writers are answered: the disk works while the event loop answers
   * them (at 50 HTTP clients answering took about 0.2 ms the disk used to sit idle). When
   * fewer wait, the writers are answered first and a few microtasks run before the next batch
   * is taken, so writers that append again at once (a loop of awaits) join it: one batch of
   * 100 per fdatasync instead of two alternating half batches. Either way a writer is
   * answered only after its own batch's fdatasync, in LSN order.
   */
  async #flushLoop(): Promise<void> {
    let durable: { batch: Pending[]; written: WrittenBatch } | undefined;
    try {
      while (true) {
        if (durable !== undefined && this.#queue.length < durable.batch.length) {
          const answering = durable;
          durable = undefined;
          try {
            this.#answer(answering.batch, answering.written);
          } catch (error) {
            this.#fail(error, answering.batch);
            return;
          }
          // Microtasks only: no timer, and nothing queued is held back by more than this.
          for (let tick = 0; tick < ANSWER_TICKS; tick++) await Promise.resolve();
        }
        if (this.#queue.length === 0) break;
        const { batch, bytes } = this.#takeBatch();
        const writing = this.#writeBatch(batch, bytes);
        if (durable !== undefined) {
          const answering = durable;
          durable = undefined;
          try {
            this.#answer(answering.batch, answering.written);
          } catch (error) {
            await writing.catch(() => {});
            this.#fail(error, answering.batch, batch);
            return;
          }
        }
        try {
          durable = { batch, written: await writing };
        } catch (error) {
          this.#fail(error, batch);
          return;
        }
      }
    } finally {
      this.#flushing = undefined;
    }
  }

  /**
   * The flush loop with `inlineSync`: one batch at a time, each cut in a fresh macrotask (see
   * {@link WalOptions.inlineSync}), written, fdatasync'ed on this thread and answered. Writers
   * that append again while they are answered wait for the next macrotask with everyone else.
   */
  async #flushLoopInline(): Promise<void> {
    try {
      while (true) {
        await nextMacrotask();
        const gatherMs = this.#queue.length > 0 ? await this.#gather() : 0;
        if (this.#queue.length === 0) return;
        const { batch, bytes } = this.#takeBatch();
        try {
          this.#answer(batch, await this.#writeBatch(batch, bytes, gatherMs));
        } catch (error) {
          this.#fail(error, batch);
          return;
        }
      }
    } finally {
      this.#flushing = undefined;
    }
  }

  /**
   * Lets writers answered a moment ago join the batch about to be cut (see
   * WalOptions.expectedWriters): while it is short, holds only this node's writes and writers
   * are expected, the event loop turns (reading their requests) for at most gatherMicros.
   * Resolves with how long it waited (0: it did not; above 0 whenever it did).
   */
  async #gather(): Promise<number> {
    const expected = this.#expectedWriters;
    if (expected === undefined || this.#gatherMs <= 0) return 0;
    // Short by then, so looking at every queued entry costs at most WAL_GATHER_BATCH_ENTRIES.
    const waiting = () =>
      this.#queue.length > 0 && this.#queue.length < WAL_GATHER_BATCH_ENTRIES &&
      !this.#queue.some((p) => p.replicated) && expected() > 0;
    if (!waiting()) return 0;
    const started = this.#clock.monoMs();
    const until = started + this.#gatherMs;
    // The turn cap bounds the wait under a clock that does not move (tests, simulations).
    for (let turn = 0; turn < GATHER_TURNS_MAX; turn++) {
      await nextMacrotask();
      if (!waiting() || this.#clock.monoMs() >= until) break;
    }
    // Above 0 even when the clock stood still: the batch did wait.
    return Math.max(this.#clock.monoMs() - started, Number.MIN_VALUE);
  }

  /** Takes the next batch off the queue, within the entry and byte bounds. */
  #takeBatch(): { batch: Pending[]; bytes: number } {
    let count = 0;
    let bytes = 0;
    while (
      count < this.#queue.length &&
      count <
        (this.#queue[count].replicated ? this.#replicatedBatchEntriesMax : this.#batchEntriesMax) &&
      (count === 0 || bytes + this.#queue[count].frameBytes <= this.#batchBytesMax)
    ) {
      bytes += this.#queue[count].frameBytes;
      count++;
    }
    const batch = this.#queue.splice(0, count);
    this.#queueBytes -= bytes;
    return { batch, bytes };
  }

  /** A durable batch: hand it to onDurable, then answer its writers. */
  #answer(batch: Pending[], written: WrittenBatch): void {
    // lastLsn moves in the same synchronous step as onDurable gets the batch: an embedder's view
    // (the Store's keyspace) then reflects lastLsn at every turn of the microtask queue. Moved
    // when #writeBatch returned, it ran ahead of the view until the flush loop resumed, and a
    // snapshot taken in between was labelled with an LSN its records did not reach.
    this.#durableLsn = batch[batch.length - 1].entry.lsn;
    this.#onDurable?.(written.entries ?? batch.map((p) => p.entry), written.info);
    for (const p of batch) p.resolve(p.entry.lsn);
  }

  /** Fail stop: rejects the given batches and everything queued, and every later append. */
  #fail(error: unknown, ...batches: Pending[][]): void {
    this.#failed = error;
    const failure = this.#failedError();
    for (const batch of batches) for (const p of batch) p.reject(failure);
    for (const p of this.#queue.splice(0)) p.reject(failure);
    this.#queueBytes = 0;
  }

  /** Writes and fdatasyncs one batch; the caller answers its writers. */
  async #writeBatch(batch: Pending[], bytes: number, gatherMs = 0): Promise<WrittenBatch> {
    let active = this.#segments[this.#segments.length - 1];
    if (active.bytes + bytes > this.#segmentBytesMax && active.lastLsn >= active.firstLsn) {
      await this.#seal(active);
      const created = await Wal.#createSegment(this.dir, batch[0].entry.lsn, this.#clock);
      this.#segments.push(created.segment);
      if (this.#pageCache !== undefined) {
        this.#cachedSegments.push({ segment: created.segment, droppedTo: 0 });
      }
      this.#file = created.file;
      this.#zeroedEnd = SEGMENT_HEADER_BYTES;
      active = created.segment;
    }
    // Never write where zeros are being laid: wait for that write, then write (past it, the
    // file simply grows).
    if (active.bytes + bytes > this.#zeroedEnd && this.#zeroing) await this.#zeroing;
    const buffer = this.#frameBatch(batch, bytes);
    const t0 = this.#clock.monoMs();
    writeAllSync(this.#file, buffer);
    const t1 = this.#clock.monoMs();
    this.#writtenLsn = batch[batch.length - 1].entry.lsn;
    // Mapped once for both hooks: onDurable gets the same array.
    let entries: readonly Entry[] | undefined;
    if (this.#onWritten !== undefined) {
      entries = batch.map((p) => p.entry);
      // The batch buffer is reused by the next batch: records() copies it, and only while
      // onWritten runs.
      let records: Uint8Array[] | undefined;
      let inCall = true;
      const recordsOf = () => {
        invariant(inCall || records !== undefined, "records() is for use inside onWritten");
        return records ??= splitRecords(buffer.slice(), batch);
      };
      const yieldFirst = this.#onWritten(entries, recordsOf);
      inCall = false;
      if (yieldFirst && this.#inlineSync) {
        for (let turn = 0; turn < WRITTEN_MICROTASK_TURNS; turn++) await Promise.resolve();
      }
    }
    const ts = this.#clock.monoMs();
    this.#beforeSync?.();
    if (this.#inlineSync) this.#file.syncDataSync();
    else await this.#file.syncData();
    const t2 = this.#clock.monoMs();
    // Index points are laid after the write is durable, so reads never see unsynced offsets.
    const index = active.index!;
    let offset = active.bytes;
    let lastIndexed = index.length > 0 ? index[index.length - 1].offset : -Infinity;
    for (const p of batch) {
      if (offset - lastIndexed >= SPARSE_INDEX_INTERVAL_BYTES) {
        index.push({ lsn: p.entry.lsn, offset });
        lastIndexed = offset;
      }
      offset += p.frameBytes;
    }
    active.bytes = offset;
    active.lastLsn = batch[batch.length - 1].entry.lsn;
    this.#zeroedEnd = Math.max(this.#zeroedEnd, offset);
    this.#dropBehind(active);
    this.#preallocate();
    return {
      info: { bytes, entries: batch.length, writeMs: t1 - t0, syncMs: t2 - ts, gatherMs },
      entries,
    };
  }

  /**
   * Starts laying zeros ahead of the active segment's records when fewer than half of
   * `preallocateBytes` remain prepared (never past the segment size limit). Runs beside the
   * batches; a failure only turns preallocation off (and says so through
   * `onPreallocateFailed`), since the zeros hold no data: batches then write past the prepared
   * zeros and the file grows with them, and a real disk fault shows up in the next batch's own
   * write or fdatasync. We turned down failing the WAL on it: a disk too full for 1 MiB of
   * zeros may still hold the writes, and a write that does not fit fails stop anyway.
   */
  #preallocate(): void {
    const active = this.#segments[this.#segments.length - 1];
    const from = this.#zeroedEnd;
    const length = Math.min(this.#preallocateBytes, this.#segmentBytesMax - from);
    if (
      this.#zeroing !== undefined || this.#closed || this.#failed !== undefined ||
      length <= 0 || from - active.bytes >= this.#preallocateBytes / 2
    ) return;
    const path = active.path;
    this.#zeroing = (async () => {
      this.#zeroFile ??= await Deno.open(path, { write: true });
      if (this.#inlineSync) {
        // The event loop turns only between batches here, so each awaited step of the zero
        // write waits a whole batch: seek and write on this thread, leave only the sync.
        this.#zeroFile.seekSync(from, Deno.SeekMode.Start);
        writeAllSync(this.#zeroFile, zeros(length));
      } else {
        await this.#zeroFile.seek(from, Deno.SeekMode.Start);
        await writeAll(this.#zeroFile, zeros(length));
      }
      await this.#zeroFile.syncData();
      if (this.#segments[this.#segments.length - 1] === active) {
        this.#zeroedEnd = Math.max(this.#zeroedEnd, from + length);
      }
    })().catch((error) => {
      this.#preallocateBytes = 0;
      this.#onPreallocateFailed?.(error);
    }).finally(() => {
      this.#zeroing = undefined;
    });
  }

  /**
   * Seals the active segment before the next one is created: waits for the zero writer, cuts
   * whatever follows the last record (prepared zeros, or part of a zero write that failed) and
   * makes that durable, so only the last segment of a WAL can have bytes after its records.
   * Once per segment, so the fdatasync is not worth skipping.
   */
  async #seal(active: Segment): Promise<void> {
    if (this.#zeroing) await this.#zeroing;
    this.#zeroFile?.close();
    this.#zeroFile = undefined;
    await this.#file.truncate(active.bytes);
    await this.#file.syncData();
    this.#file.close();
  }

  /**
   * Drops synced pages more than dropBehindBytes behind the newest record, across segments,
   * oldest first, once at least WAL_DROP_BEHIND_STEP_BYTES have gathered (one call per step,
   * not per batch: a call per small batch cost more than it saved at 10 clients). A sealed
   * segment (every one but `active`) wholly behind leaves the list.
   */
  #dropBehind(active: Segment): void {
    if (this.#pageCache === undefined) return;
    const cached = this.#cachedSegments;
    let undropped = 0;
    for (const c of cached) undropped += c.segment.bytes - c.droppedTo;
    let excess = undropped - this.#dropBehindBytes;
    if (excess < WAL_DROP_BEHIND_STEP_BYTES) return;
    while (excess > 0 && cached.length > 0) {
      const c = cached[0];
      const { path, bytes } = c.segment;
      if (c.segment !== active && c.droppedTo + excess >= bytes) {
        this.#advise(path, c.droppedTo, 0); // 0: to the end of the file
        this.#pageCache.forget(path);
        excess -= bytes - c.droppedTo;
        cached.shift();
        continue;
      }
      const upTo = Math.floor((c.droppedTo + excess) / PAGE_BYTES) * PAGE_BYTES;
      if (upTo > c.droppedTo) this.#advise(path, c.droppedTo, upTo - c.droppedTo);
      c.droppedTo = Math.max(c.droppedTo, upTo);
      return;
    }
  }

  /** A segment retention removes is no longer held open for dropping its pages. */
  #forgetCached(segment: Segment): void {
    const at = this.#cachedSegments.findIndex((c) => c.segment === segment);
    if (at < 0) return;
    this.#cachedSegments.splice(at, 1);
    this.#pageCache?.forget(segment.path);
  }

  #advise(path: string, offset: number, length: number): void {
    const advisor = this.#pageCache!;
    if (advisor.dontNeed(path, offset, length) || advisor.unavailable === undefined) return;
    this.#onPageCacheUnavailable?.(advisor.unavailable);
    this.#onPageCacheUnavailable = undefined;
  }

  /** Lays the batch's records (length, CRC, entry) into one buffer, reused across batches. */
  #frameBatch(batch: Pending[], bytes: number): Uint8Array {
    if (this.#batchBuffer.length < bytes) {
      if (bytes > BATCH_BUFFER_KEEP_BYTES) return this.#fillBatch(new Uint8Array(bytes), batch);
      // Doubling: a buffer grown a little for each larger batch took fresh pages every time
      // (a page fault per 4 KiB on the event loop; session 42).
      const grown = Math.max(
        bytes,
        Math.min(BATCH_BUFFER_KEEP_BYTES, 2 * this.#batchBuffer.length),
      );
      this.#batchBuffer = new Uint8Array(grown);
    }
    return this.#fillBatch(this.#batchBuffer.subarray(0, bytes), batch);
  }

  #fillBatch(buffer: Uint8Array, batch: Pending[]): Uint8Array {
    const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.length);
    let at = 0;
    for (const p of batch) {
      const start = at + RECORD_HEADER_BYTES;
      let end: number;
      if (p.data !== undefined) {
        buffer.set(p.data, start);
        end = start + p.data.length;
      } else end = writeEntryDirect(buffer, start, p.entry);
      invariant(
        end - at === p.frameBytes,
        "An entry's encoding changed size between append and flush",
      );
      view.setUint32(at, end - start, true);
      view.setUint32(at + 4, crc32(buffer.subarray(start, end)), true);
      at = end;
    }
    invariant(at === buffer.length, "Batch bytes do not add up");
    return buffer;
  }

  /**
   * Durable entries from `fromLsn` on, in LSN order: at most `limit` entries and about
   * `bytesMax` bytes (always at least one entry when one exists).
   */
  async read(
    fromLsn: number,
    options: { limit?: number; bytesMax?: number } = {},
  ): Promise<Entry[]> {
    const out: Entry[] = [];
    // Decoded entries copy what they keep, so the chunks can be read into a reused buffer.
    const scratch = this.#readScratch.pop() ?? new Uint8Array(WAL_READ_CHUNK_BYTES);
    try {
      await this.#scanRecords(
        fromLsn,
        options,
        (data) => out.push(decodeEntry(data)),
        (bytes) => scratch.length >= bytes ? scratch.subarray(0, bytes) : undefined,
      );
    } finally {
      if (this.#readScratch.length < WAL_READ_SCRATCH_KEPT) this.#readScratch.push(scratch);
    }
    return out;
  }

  /**
   * As {@link read}, but each entry as its CRC-checked record (`length | CRC | entry`), the
   * bytes a replication batch carries, with only the fields a leader filters on decoded.
   * `frame` is a view into a read buffer: copy it to keep it long.
   */
  async readFramed(
    fromLsn: number,
    options: { limit?: number; bytesMax?: number; buffers?: ReadBuffers } = {},
  ): Promise<FramedRecord[]> {
    const out: FramedRecord[] = [];
    const buffers = options.buffers;
    buffers?.reset();
    await this.#scanRecords(
      fromLsn,
      options,
      (data, frame) => {
        const identity = peekEntryIdentity(data) ?? decodeEntry(data);
        out.push({ lsn: identity.lsn, origin: identity.origin, seq: identity.seq, frame });
      },
      buffers === undefined ? undefined : (bytes) => buffers.take(bytes),
    );
    return out;
  }

  /**
   * Visits the CRC-checked records from `fromLsn` on: `data` is the encoded entry, `frame`
   * the whole record; both are views into a read buffer. Each chunk is read into what
   * `chunkBuffer` gives for its size, or a new buffer when it gives none.
   */
  async #scanRecords(
    fromLsn: number,
    options: { limit?: number; bytesMax?: number },
    visit: (data: Uint8Array, frame: Uint8Array) => void,
    chunkBuffer?: (bytes: number) => Uint8Array | undefined,
  ): Promise<void> {
    const limit = Math.min(options.limit ?? READ_ENTRIES_MAX, READ_ENTRIES_MAX);
    const bytesMax = Math.min(options.bytesMax ?? READ_BYTES_MAX, READ_BYTES_MAX);
    const from = Math.max(fromLsn, 1);
    if (from < this.firstLsn) throw new LsnCompactedError(from, this.firstLsn);
    let visited = 0;
    let bytesRead = 0;
    let readSinceYield = 0;
    let lsn = from;
    while (visited < limit && lsn <= this.#durableLsn && bytesRead < bytesMax) {
      const segment = this.#segmentFor(lsn);
      if (segment === undefined) break;
      segment.index ??= Wal.#scanForIndex(segment).index;
      // Snapshot the bounds now: the active segment grows while we await reads.
      const segmentEnd = segment.bytes;
      const segmentLast = segment.lastLsn;
      const hint = this.#readHints.find((h) => h.segment === segment && h.lsn === lsn);
      const point = hint ?? floorPoint(segment.index, lsn);
      let offset = point?.offset ?? SEGMENT_HEADER_BYTES;
      let cursor = point?.lsn ?? segment.firstLsn;
      while (
        visited < limit && cursor <= segmentLast && bytesRead < bytesMax && offset < segmentEnd
      ) {
        // Up to the index point at or past the last LSN wanted, which bounds where that
        // entry ends: a 100-entry read took a whole chunk, twice what it needed.
        const end = ceilPoint(segment.index, Math.max(cursor, lsn) + (limit - visited));
        const chunkBytes = Math.max(
          Math.min(segmentEnd, end?.offset ?? segmentEnd, offset + WAL_READ_CHUNK_BYTES) - offset,
          RECORD_HEADER_BYTES + 1,
        );
        if (readSinceYield >= WAL_READ_SYNC_BYTES) {
          readSinceYield = 0;
          await yieldToEventLoop();
          // Retention may have removed the segment meanwhile.
          if (this.#segmentFor(cursor) !== segment) {
            throw new LsnCompactedError(cursor, this.firstLsn);
          }
        }
        let chunk = this.#readChunk(segment, offset, chunkBytes, chunkBuffer?.(chunkBytes));
        readSinceYield += chunk.length;
        let at = 0;
        let progressed = false;
        while (
          at < chunk.length && visited < limit && cursor <= segmentLast && bytesRead < bytesMax
        ) {
          const record = readRecord(chunk, at, RECORD_BYTES_MAX);
          if (!record.ok) {
            if (record.problem === "truncated header" || record.problem === "truncated data") {
              if (!progressed) {
                // One record larger than the chunk: read exactly it.
                const len = new DataView(chunk.buffer, chunk.byteOffset + at).getUint32(0, true);
                chunk = this.#readChunk(segment, offset, RECORD_HEADER_BYTES + len);
                readSinceYield += chunk.length;
                at = 0;
                const whole = readRecord(chunk, 0, RECORD_BYTES_MAX);
                if (!whole.ok) {
                  throw new CorruptionError(
                    segment.fileName,
                    offset,
                    whole.problem,
                    "Restore the segment from a peer or a backup",
                  );
                }
                continue;
              }
              break;
            }
            throw new CorruptionError(
              segment.fileName,
              offset + at,
              record.problem,
              "Restore the segment from a peer or a backup",
            );
          }
          progressed = true;
          if (cursor >= lsn) {
            visit(record.data, chunk.subarray(at, record.next));
            visited++;
            bytesRead += record.data.length;
          }
          cursor++;
          at = record.next;
        }
        offset += at;
        if (at === 0) break;
      }
      if (cursor <= segmentLast) this.#hintRead(segment, cursor, offset);
      lsn = cursor;
    }
  }

  /**
   * Reads `bytes` at `offset` of `segment` (fewer at its end), into `into` when given (exactly
   * `bytes` long), else into a new buffer.
   */
  #readChunk(segment: Segment, offset: number, bytes: number, into?: Uint8Array): Uint8Array {
    into ??= new Uint8Array(bytes);
    // A closed WAL keeps no handle open: a read after close opens the file for itself.
    if (this.#closed) return readAt(segment.path, offset, into);
    return readFileAt(this.#reader(segment), offset, into);
  }

  /** The open read handle on `segment`, opened (and the least recently used closed) if need be. */
  #reader(segment: Segment): Deno.FsFile {
    let file = this.#readers.get(segment);
    if (file !== undefined) {
      this.#readers.delete(segment);
    } else {
      file = Deno.openSync(segment.path, { read: true });
      if (this.#readers.size >= WAL_READ_HANDLES_MAX) {
        const [oldest, handle] = this.#readers.entries().next().value!;
        handle.close();
        this.#readers.delete(oldest);
      }
    }
    this.#readers.set(segment, file);
    return file;
  }

  /** Remembers that record `lsn` starts at `offset` in `segment`, for the next scan from it. */
  #hintRead(segment: Segment, lsn: number, offset: number): void {
    const hints = this.#readHints;
    const same = hints.findIndex((h) => h.segment === segment && h.lsn === lsn);
    if (same >= 0) hints.splice(same, 1);
    else if (hints.length >= WAL_READ_HINTS_MAX) hints.shift();
    hints.push({ segment, lsn, offset });
  }

  /** Closes the read handle on `segment` and forgets its read hints. */
  #forgetReads(segment: Segment): void {
    this.#readers.get(segment)?.close();
    this.#readers.delete(segment);
    this.#readHints = this.#readHints.filter((h) => h.segment !== segment);
  }

  #segmentFor(lsn: number): Segment | undefined {
    let lo = 0;
    let hi = this.#segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.#segments[mid].firstLsn <= lsn) lo = mid;
      else hi = mid - 1;
    }
    const segment = this.#segments[lo];
    return segment && segment.firstLsn <= lsn && lsn <= segment.lastLsn ? segment : undefined;
  }

  /**
   * Deletes sealed segments whose every entry is below `lsn`. The active segment stays.
   * Returns the segments removed.
   */
  async removeBefore(lsn: number): Promise<SegmentInfo[]> {
    const removed: SegmentInfo[] = [];
    while (this.#segments.length > 1 && this.#segments[0].lastLsn < lsn) {
      const segment = this.#segments.shift()!;
      this.#forgetReads(segment);
      this.#forgetCached(segment);
      await Deno.remove(segment.path);
      removed.push({
        fileName: segment.fileName,
        firstLsn: segment.firstLsn,
        lastLsn: segment.lastLsn,
        bytes: segment.bytes,
      });
    }
    if (removed.length > 0) await syncDir(this.dir);
    return removed;
  }

  /** Waits for queued writes, then closes. Later appends reject with ClosedError. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#flushing) await this.#flushing;
    if (this.#zeroing) await this.#zeroing;
    this.#zeroFile?.close();
    this.#file.close();
    for (const c of this.#cachedSegments.splice(0)) this.#pageCache?.forget(c.segment.path);
    for (const segment of [...this.#readers.keys()]) this.#forgetReads(segment);
  }
}

const PAGE_BYTES = 4096;

/** The batch's records as views of `bytes` (laid out by #fillBatch), one per entry. */
function splitRecords(bytes: Uint8Array, batch: readonly { frameBytes: number }[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let at = 0;
  for (const p of batch) {
    out.push(bytes.subarray(at, at + p.frameBytes));
    at += p.frameBytes;
  }
  return out;
}
