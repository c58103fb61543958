/**
 * The replication shell: one {@link LeaderStream} and one {@link FollowerStream} per peer,
 * fed from the cluster transport and the local log, plus what rides on the streams: write
 * acks (`one|quorum|all`), quorum reads with read repair, tombstone collection and the
 * per-peer view `shanghai replicas` prints.
 *
 * The shell owns no timer of its own: `tick()` is called by the node every TICK_MS (and by
 * the simulation with a fake clock), so the same code runs in both. Order of I/O: a follower
 * acknowledges a batch only after every entry of it is durable in its WAL. A leader sends
 * entries once they are durable in its own, or, given `mayShipUnsynced` and a log that
 * reports its writes (a node's store), as soon as they are written and before its fdatasync,
 * so the follower's sync runs beside the leader's instead of after it. An entry shipped that
 * way and lost in a crash is still held by the follower; `mayShipUnsynced` is how the node
 * records that a crash must give it a new origin (src/node/unsynced.ts), so that the
 * sequence numbers it loses are never issued again. Copies (acks) count only durable ones.
 *
 * @module
 */
import { ByteParts } from "../cluster/frame.ts";
import type { PeerTransport } from "../cluster/transport.ts";
import type { Clock } from "../common/clock.ts";
import { compareVersions, covers, type Entry, type VersionVector } from "../common/entry.ts";
import {
  AckTimeoutError,
  OverloadedError,
  ProtocolError,
  ShanghaiError,
} from "../common/errors.ts";
import {
  REPL_BATCH_BYTES_DEFAULT,
  REPL_BATCH_ENTRIES_DEFAULT,
  REPL_CREDIT_BOOST,
  REPL_CREDIT_ENTRIES_DEFAULT,
  REPL_RELAY_GRACE_MS_DEFAULT,
  REPL_RESEND_AFTER_MS_DEFAULT,
  REPL_SNAPSHOT_CHUNK_BYTES,
  REPL_SNAPSHOT_CHUNK_KEYS,
  REPL_SNAPSHOT_CHUNKS_INFLIGHT_MAX,
  REPL_TAIL_CACHE_BYTES,
  REPL_WINDOW_BATCHES_MAX,
  REPL_WINDOW_BYTES_DEFAULT,
  TOMBSTONE_GRACE_MS_DEFAULT,
  WAITERS_MAX,
} from "../common/limits.ts";
import { originNode } from "../common/origin.ts";
import { type AheadRanges, checkAheadRanges, type KeyRecord } from "../storage/kv/keyspace.ts";
import type { LeaderCursor } from "../storage/kv/snapshot.ts";
import { LsnCompactedError, ReadBuffers } from "../storage/wal/wal.ts";
import type { EventBus } from "../telemetry/events.ts";
import { type Logger, silentLogger } from "../telemetry/log.ts";
import { FollowerStream } from "./follower.ts";
import {
  decodeBatchEntries,
  decodeOneEntry,
  decodeSnapRecords,
  encodeOneEntry,
  encodeSnapRecords,
  MSG_ACK,
  MSG_BATCH,
  MSG_OPEN,
  MSG_OPENED,
  MSG_READ,
  MSG_READOK,
  MSG_REPAIR,
  MSG_SNAP,
  MSG_SNAPACK,
  parseAck,
  parseBatch,
  parseOpen,
  parseOpened,
  parseRead,
  parseReadOk,
  parseRepair,
  parseSnap,
  parseSnapAck,
  recordToEntry,
  REPL_PROTOCOL_VERSION,
  SNAP_AHEAD_BOUNDS,
  type Succession,
} from "./frames.ts";
import { type BatchHeader, LeaderStream, type LogBounds, type StreamStatus } from "./leader.ts";
import type { CapturedSnapshot, FramedEntry, ReplicaLog } from "./replica_log.ts";
import { TailCache } from "./tail_cache.ts";

/** Write acknowledgement levels. */
export type AckLevel = "one" | "quorum" | "all";
export const ACK_LEVELS: readonly AckLevel[] = ["one", "quorum", "all"];

/** How often the node calls tick(). */
export const TICK_MS = 20;
/**
 * A follower reports its version vector and clock to each leader this often when they changed
 * (and every STATUS_REFRESH_MS anyway), even with no batch to ack: quorum counts and tombstone
 * collection need every member's view, and a quiet stream would otherwise leave it stale.
 */
export const STATUS_EVERY_MS = 1_000;
export const STATUS_REFRESH_MS = 5_000;
const HLC_PER_MS = 1024;
/** The records of a cursor-only batch. */
const NO_RECORDS = new ByteParts([]);
/**
 * A batch that carries no entry (the follower holds, or gets from their origins, everything in
 * its range) goes to a peer at most this often. Each received batch of relays used to answer
 * with one such batch to every other peer, and each of those with an ack: 2 frames per batch
 * per peer that only move a cursor. Delaying them costs nothing but how fresh the follower's
 * cursor for this node's log is; this node's own entries are never held by it.
 */
export const SKIP_BATCH_EVERY_MS = TICK_MS;

/**
 * Logged (level warn, with `peer`, `origins` and the `first` few as origin, reported, holds) when a
 * restarted peer reports holding fewer entries of an origin than it reported before
 * (LeaderStream.takeVectorRegressions); the stream then sends the peer a snapshot, which brings
 * it the difference. The chaos test and the soak fail on it all the same: it is a fault.
 */
export const VECTOR_REGRESSION_WARNING =
  "A peer reports holding fewer entries than it reported before it restarted: this node sends it a snapshot of its state to make up the difference";

/**
 * Logged (at error) when a peer holds more of this node's own origin than this node has
 * numbered: its data directory was rolled back (a volume snapshot put back, a copy of an older
 * directory) or its disk lost writes it had made durable. See Shipper's #noteOwnOrigin.
 */
export const OWN_ORIGIN_BEHIND_WARNING =
  "A peer holds more of this node's own writes than this node's data directory does: it was rolled back or its disk lost writes it had made durable. Its next writes are numbered past what the peer holds";

/** Options of a {@link Shipper}. */
export interface ShipperOptions {
  log: ReplicaLog;
  transport: PeerTransport;
  clock: Clock;
  /**
   * Every member's id, this node and down ones included (quorum size counts them all). Hand
   * back a new array when the membership changes: the same array again keeps the count the
   * shipper took from it.
   */
  members?: () => readonly string[];
  /** First replication session number (default: wall-clock ms * 1000). */
  sessionBase?: number;
  creditEntries?: number;
  batchEntriesMax?: number;
  batchBytesMax?: number;
  windowBytesMax?: number;
  resendAfterMs?: number;
  /** See REPL_RELAY_GRACE_MS_DEFAULT. */
  relayGraceMs?: number;
  /**
   * A tombstone must be this much older than every member's reported clock to be collected
   * (default TOMBSTONE_GRACE_MS_DEFAULT).
   */
  tombstoneGraceMs?: number;
  /** Bytes of the newest entries kept in memory for shipping (default REPL_TAIL_CACHE_BYTES). */
  tailCacheBytes?: number;
  /**
   * Asked once, the first time there is a peer to ship a written but not yet durable batch
   * to: whether entries may go out before this node's sync (see the module comment). It must
   * make durable the fact that they may, and answer false when it cannot. Absent: never.
   */
  mayShipUnsynced?: () => boolean;
  /**
   * When this node's origin replaced another after a crash in this run's start: the old
   * origin and the last LSN it recovered (frames.ts, Succession). Peers then keep their
   * cursors for its log up to there, and what it acknowledged as a follower.
   */
  succeeds?: Succession;
  events?: EventBus;
  logger?: Logger;
}

/** One row of `shanghai replicas`. */
export interface ReplicaView {
  peer: string;
  status: StreamStatus;
  /** This node's last LSN. */
  leaderOffset: number;
  /** Highest LSN of this node's log the peer acknowledged. */
  followerOffset: number;
  lag: number;
  /** Entries the peer still lets this node send before its next ack. */
  credit: number;
  inflightEntries: number;
  inflightBytes: number;
  inflightBatches: number;
  /** Entries acknowledged per second, over the last few seconds. */
  entriesPerSec: number;
  bytesPerSec: number;
  /**
   * Mean ms from sending a batch of entries to the peer until its ack arrived, over the same
   * window as the rates; null when none was acknowledged in it.
   */
  ackLatencyMs: number | null;
  /** Entries of this peer's log this node holds durably (its cursor as a follower). */
  receivedOffset: number;
  /**
   * What this node takes the peer to hold, as the peer's acks and reports said: entries under
   * it count as copies and are never sent to the peer again. Beside the peer's own
   * `GET /v1/digest` vector, a difference is what replication still has to bring.
   */
  peerVersionVector: VersionVector;
}

interface Waiter {
  origin: string;
  seq: number;
  needed: number;
  deadlineMs: number;
  resolve: (copies: number) => void;
}

interface PeerStats {
  ackedEntries: number;
  ackedBytes: number;
  rateEntries: number;
  rateBytes: number;
  windowStartMs: number;
  windowEntries: number;
  windowBytes: number;
  ackLatencyMs: number | null;
  windowAcks: number;
  windowAckMs: number;
  refused: number;
}

interface QuorumRead {
  key: string;
  needed: number;
  replies: Map<string, Entry | null>;
  /** The version vectors of the replies without a record (ReadOkFrame.vv). */
  emptyVvs: VersionVector[];
  deadlineMs: number;
  resolve: (replies: Map<string, Entry | null>) => void;
}

function newestOf(a: Entry | null, b: Entry | null): Entry | null {
  if (a === null) return b;
  if (b === null) return a;
  return compareVersions(a, b) >= 0 ? a : b;
}

function stripLsn(entry: Entry): Omit<Entry, "lsn"> {
  const { lsn: _lsn, ...input } = entry;
  return input;
}

/** Replication over a {@link PeerTransport}: one leader and one follower stream per peer. */
export class Shipper {
  readonly log: ReplicaLog;
  readonly transport: PeerTransport;
  readonly #clock: Clock;
  readonly #options: ShipperOptions;
  // Cursors the loaded snapshot kept: each peer's stream resumes from its own.
  readonly #resume: Record<string, LeaderCursor>;
  readonly #logger: Logger;
  readonly #events: EventBus | undefined;
  #leaders = new Map<string, LeaderStream>();
  #followers = new Map<string, FollowerStream>();
  #followerChains = new Map<string, Promise<void>>();
  readonly #tail: TailCache;
  readonly #peerVectorSeen = Promise.withResolvers<void>();
  /**
   * Each follower's WAL read buffers between its reads (see ReadBuffers): at most 2 MiB a peer,
   * kept like the rest of its stream's state (LeaderStream) while it is down.
   */
  readonly #readBuffers = new Map<string, ReadBuffers>();
  // A transfer in progress: chunk i sends the captured keys from chunkStarts[i] up to the next.
  #snapshots = new Map<
    string,
    { session: number; capture: CapturedSnapshot; chunkStarts: number[]; ahead?: AheadRanges }
  >();
  #stats = new Map<string, PeerStats>();
  // This process's run (OpenedFrame.run): leaders check a follower that restarted.
  readonly #run = crypto.randomUUID().slice(0, 8);
  #known = new Set<string>();
  #membersMemo:
    | { source: readonly string[] | undefined; known: number; ids: readonly string[] }
    | undefined;
  #waiters = new Set<Waiter>();
  #reads = new Map<number, QuorumRead>();
  #readId = 0;
  #pumpScheduled = false;
  #lastLag = new Map<string, number>();
  #lastStatus = new Map<string, { atMs: number; report: string }>();
  #toOpen = new Set<string>();
  #lastFollowerLag = new Map<string, number>();
  #unsubscribe: (() => void)[] = [];
  #stopped = false;
  // Whether written entries go out before this node's sync: undecided until the first batch
  // written with a peer to ship it to (ShipperOptions.mayShipUnsynced), then fixed.
  #shipUnsynced: boolean | undefined;
  /** Frames refused as malformed or out of order since start. */
  refusedFrames = 0;

  constructor(options: ShipperOptions) {
    this.log = options.log;
    this.#resume = options.log.followerCursors?.() ?? {};
    this.transport = options.transport;
    this.#clock = options.clock;
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#events = options.events;
    this.#tail = new TailCache(options.tailCacheBytes ?? REPL_TAIL_CACHE_BYTES);
  }

  get nodeId(): string {
    return this.log.nodeId;
  }

  /** Registers handlers and opens a stream to every connected peer. */
  start(): void {
    const t = this.transport;
    t.handle(MSG_OPEN, (from, body) => this.#guard(from, MSG_OPEN, () => this.#onOpen(from, body)));
    t.handle(
      MSG_OPENED,
      (from, body) => this.#guard(from, MSG_OPENED, () => this.#onOpened(from, body)),
    );
    t.handle(
      MSG_BATCH,
      (from, body) => this.#guard(from, MSG_BATCH, () => this.#onBatch(from, body)),
    );
    t.handle(MSG_ACK, (from, body) => this.#guard(from, MSG_ACK, () => this.#onAck(from, body)));
    t.handle(MSG_SNAP, (from, body) => this.#guard(from, MSG_SNAP, () => this.#onSnap(from, body)));
    t.handle(
      MSG_SNAPACK,
      (from, body) => this.#guard(from, MSG_SNAPACK, () => this.#onSnapAck(from, body)),
    );
    t.handle(MSG_READ, (from, body) => this.#guard(from, MSG_READ, () => this.#onRead(from, body)));
    t.handle(
      MSG_READOK,
      (from, body) => this.#guard(from, MSG_READOK, () => this.#onReadOk(from, body)),
    );
    t.handle(
      MSG_REPAIR,
      (from, body) => this.#guard(from, MSG_REPAIR, () => this.#onRepair(from, body)),
    );
    this.#unsubscribe.push(t.onPeerUp((peer) => this.#onPeerUp(peer)));
    this.#unsubscribe.push(t.onPeerDown((peer) => this.#onPeerDown(peer)));
    if (this.#options.mayShipUnsynced === undefined || this.log.onWritten === undefined) {
      this.#shipUnsynced = false;
    } else {
      this.#unsubscribe.push(
        this.log.onWritten((entries, records) => this.#onWritten(entries, records)),
      );
    }
    this.#unsubscribe.push(this.log.onApply((entry) => {
      if (this.#shipUnsynced !== true) this.#cacheForShipping(entry);
      this.#schedulePump();
    }));
    for (const peer of t.connectedPeers()) this.#onPeerUp(peer);
  }

  /**
   * A batch written to the log and not yet durable: ship it now, unless this node ships only
   * durable entries. Answers whether the log should let queued microtasks run before its sync.
   */
  #onWritten(entries: readonly Entry[], records: () => Uint8Array[]): boolean {
    if (this.#stopped || this.#leaders.size === 0 || this.#shipUnsynced === false) return false;
    if (this.#shipUnsynced === undefined) {
      this.#shipUnsynced = this.#options.mayShipUnsynced!();
      if (!this.#shipUnsynced) return false;
      this.#logger.info("Replication ships entries before their fdatasync");
    }
    // This node's own entries go to every peer: the records as the WAL wrote them are the
    // frames peers get, without encoding again. A batch of peers' entries only is cached
    // without them: every peer normally has those from their origin, and the copy of the
    // batch (a follower's batch holds up to 1,000 entries) was fresh memory on every batch;
    // the rare relay frames its entry when it ships it (TailCache.read).
    const own = this.log.origin;
    if (entries.some((entry) => entry.origin === own)) {
      const framed = records();
      for (let i = 0; i < entries.length; i++) this.#cacheForShipping(entries[i], framed[i]);
    } else {
      for (const entry of entries) this.#cacheForShipping(entry);
    }
    this.#schedulePump();
    return true;
  }

  /** An entry to ship, in LSN order: written (shipping unsynced) or applied (durable). */
  #cacheForShipping(entry: Entry, frame?: Uint8Array): void {
    // With no peer there is no stream to serve from the cache, and caching every entry only
    // kept it alive through a young-generation collection or two: a single node's scavenges
    // paused 1.6 ms (median) with it and 1.1 ms without. A peer that comes later is served
    // from the WAL until the cache (which restarts at any gap in LSNs) holds what it needs.
    if (this.#leaders.size > 0) this.#tail.onApply(entry, frame);
    // This node's own entry goes to every peer at once, whatever cursor-only batch waits.
    if (entry.origin === this.log.origin) {
      for (const leader of this.#leaders.values()) leader.releaseCursorOnly();
    }
  }

  /** Stops streaming and answers every waiter with what it has. */
  stop(): void {
    this.#stopped = true;
    for (const off of this.#unsubscribe) off();
    this.#unsubscribe = [];
    for (const waiter of this.#waiters) waiter.resolve(this.copies(waiter.origin, waiter.seq));
    this.#waiters.clear();
    for (const read of this.#reads.values()) read.resolve(read.replies);
    this.#reads.clear();
  }

  #guard(from: string, type: string, handler: () => void): void {
    if (this.#stopped) return;
    try {
      handler();
    } catch (error) {
      if (error instanceof ProtocolError) {
        this.#refuse(from, error.message);
        return;
      }
      this.#logger.error("Replication handler failed", {
        type,
        from,
        error: String((error as Error)?.stack ?? error),
      });
    }
  }

  #refuse(from: string, reason: string): void {
    this.refusedFrames++;
    this.#peerStats(from).refused++;
    this.#logger.warn("Refused replication frame", { from, reason });
  }

  #bounds(): LogBounds {
    const lastLsn = this.#shipUnsynced === true ? this.log.writtenLsn!() : this.log.lastLsn();
    return { firstLsn: this.log.firstLsn(), lastLsn };
  }

  #peerStats(peer: string): PeerStats {
    let stats = this.#stats.get(peer);
    if (!stats) {
      stats = {
        ackedEntries: 0,
        ackedBytes: 0,
        rateEntries: 0,
        rateBytes: 0,
        windowStartMs: this.#clock.monoMs(),
        windowEntries: 0,
        windowBytes: 0,
        ackLatencyMs: null,
        windowAcks: 0,
        windowAckMs: 0,
        refused: 0,
      };
      this.#stats.set(peer, stats);
    }
    return stats;
  }

  #leader(peer: string): LeaderStream {
    let leader = this.#leaders.get(peer);
    if (!leader) {
      const o = this.#options;
      leader = new LeaderStream({
        peerId: peer,
        origin: this.log.origin,
        succeeds: o.succeeds,
        sessionBase: o.sessionBase ?? Math.floor(this.#clock.nowMs()) * 1000,
        creditEntries: o.creditEntries ?? REPL_CREDIT_ENTRIES_DEFAULT,
        batchEntriesMax: o.batchEntriesMax ?? REPL_BATCH_ENTRIES_DEFAULT,
        batchBytesMax: o.batchBytesMax ?? REPL_BATCH_BYTES_DEFAULT,
        windowBytesMax: o.windowBytesMax ?? REPL_WINDOW_BYTES_DEFAULT,
        windowBatchesMax: REPL_WINDOW_BATCHES_MAX,
        resendAfterMs: o.resendAfterMs ?? REPL_RESEND_AFTER_MS_DEFAULT,
        snapshotChunksInflightMax: REPL_SNAPSHOT_CHUNKS_INFLIGHT_MAX,
        relayGraceMs: o.relayGraceMs ?? REPL_RELAY_GRACE_MS_DEFAULT,
        cursorOnlyEveryMs: SKIP_BATCH_EVERY_MS,
      });
      this.#leaders.set(peer, leader);
      this.#known.add(peer);
    }
    return leader;
  }

  #follower(peer: string): FollowerStream {
    let follower = this.#followers.get(peer);
    if (!follower) {
      follower = new FollowerStream(
        peer,
        (origin) => this.log.vectorSeq(origin),
        this.#resume[peer],
      );
      this.#followers.set(peer, follower);
      this.#known.add(peer);
    }
    return follower;
  }

  #onPeerUp(peer: string): void {
    if (this.#stopped || peer === this.nodeId) return;
    // Opened on the next tick, not inside the transport's peer-up callback: the membership
    // layer does its join exchange there first, and a connection both sides dialed at once
    // is settled (one of the two dropped) before replication puts frames on it.
    this.#leader(peer);
    this.#toOpen.add(peer);
  }

  #openPending(): void {
    for (const peer of this.#toOpen) {
      this.#toOpen.delete(peer);
      if (!this.transport.connectedPeers().includes(peer)) continue;
      this.#leader(peer).onPeerUp(this.#clock.monoMs(), this.#bounds());
      this.#pump(peer);
    }
  }

  #onPeerDown(peer: string): void {
    if (peer === this.nodeId) return;
    this.#toOpen.delete(peer);
    this.#leader(peer).onPeerDown();
    const follower = this.#followers.get(peer);
    if (follower?.streaming) {
      follower.onLinkDown();
      this.#sourcesChanged();
    }
    this.#snapshots.delete(peer);
  }

  // ---- leader side -------------------------------------------------------------------------

  #schedulePump(): void {
    if (this.#pumpScheduled || this.#stopped) return;
    this.#pumpScheduled = true;
    queueMicrotask(() => {
      this.#pumpScheduled = false;
      for (const peer of this.#leaders.keys()) this.#pump(peer);
    });
  }

  #send(peer: string, type: string, body: unknown): boolean {
    const ok = this.transport.send(peer, type, body);
    if (!ok) this.#leaders.get(peer)?.onSendRefused(this.#clock.monoMs());
    return ok;
  }

  #pump(peer: string): void {
    if (this.#stopped) return;
    const leader = this.#leaders.get(peer);
    if (!leader) return;
    leader.poll(this.#clock.monoMs(), this.#bounds());
    for (const work of leader.drain()) {
      switch (work.kind) {
        case "send":
          this.#send(peer, work.type, work.body);
          break;
        case "read":
          this.#readAndSend(
            peer,
            leader,
            work.session,
            work.fromLsn,
            work.entriesMax,
            work.bytesMax,
          );
          break;
        case "snapshot":
          this.#captureSnapshot(peer, leader, work.session);
          break;
        case "sendChunk":
          this.#sendChunk(peer, work.session, work.index);
          break;
        case "snapshotDone":
          this.#snapshots.delete(peer);
          this.#logger.info("Snapshot transfer completed", { peer });
          break;
      }
    }
  }

  async #readAndSend(
    peer: string,
    leader: LeaderStream,
    session: number,
    fromLsn: number,
    entriesMax: number,
    bytesMax: number,
  ): Promise<void> {
    const vectorLsn = this.log.vectorLsn();
    let readFrom = fromLsn;
    if (vectorLsn >= fromLsn && covers(leader.followerVv, this.log.versionVector())) {
      // The follower holds every entry this node's vector counts (vectors are dense), which
      // is every entry up to vectorLsn, so a read there would leave them all out: move its
      // cursor without reading. A node catching up used to read back all it received, once
      // per peer, only to ship cursor-only batches. Entries past vectorLsn (written but not
      // yet applied, or above a gap) are read and filtered one by one as usual: when there
      // are any, the first batch covers the held range as well, so that this node's new
      // entries never wait behind a cursor-only batch's pacing.
      if (vectorLsn >= this.#bounds().lastLsn) {
        this.#sendCursorOnly(peer, leader, session, fromLsn, vectorLsn);
        return;
      }
      readFrom = vectorLsn + 1;
    }
    // The peer's read buffers, taken while this read uses them: a read of an older session
    // may still be running when the next one starts, which then reads into buffers of its own.
    const buffers = this.#readBuffers.get(peer) ?? new ReadBuffers();
    this.#readBuffers.delete(peer);
    let entries: FramedEntry[];
    try {
      // Read at least one entry even at zero entry credit: an all-skipped batch costs none.
      entries = this.#tail.read(readFrom, Math.max(1, entriesMax), bytesMax) ??
        await this.log.readFramed(readFrom, Math.max(1, entriesMax), bytesMax, buffers);
    } catch (error) {
      this.#keepReadBuffers(peer, buffers);
      leader.onReadFailed(session);
      if (!(error instanceof LsnCompactedError)) {
        this.#logger.error("Replication read failed", { peer, fromLsn, error: String(error) });
      }
      this.#pump(peer);
      return;
    }
    let pump: boolean;
    try {
      pump = this.#shipRead(peer, leader, session, fromLsn, entries);
    } finally {
      // Every record shipped was copied into its frame: the next read may reuse the buffers.
      this.#keepReadBuffers(peer, buffers);
    }
    if (pump) this.#pump(peer);
  }

  /** Keeps a read's buffers for the peer's next read, unless a newer read already left its own. */
  #keepReadBuffers(peer: string, buffers: ReadBuffers): void {
    if (!this.#readBuffers.has(peer)) this.#readBuffers.set(peer, buffers);
  }

  /**
   * Ships what one read gave, in batches; false when the stream needs no pump after it (the
   * read held nothing to ship, or no cursor-only batch may go yet).
   */
  #shipRead(
    peer: string,
    leader: LeaderStream,
    session: number,
    fromLsn: number,
    entries: FramedEntry[],
  ): boolean {
    if (entries.length === 0) {
      leader.onReadFailed(session);
      return false;
    }
    // Split into batches; each leaves out what the follower already holds (it got it from its
    // origin or another peer) but still covers its whole LSN range. It also holds back relays
    // of entries whose origin is a live peer, which ships them to the follower itself: without
    // that, the follower got most entries twice (its version vector reaches this node only
    // with its acks, after the origin's copy is already on its way). The leader stream ships
    // them after all if the follower does not report them within relayGraceMs.
    const { entriesMax: batchEntries, bytesMax: batchBytes } = leader.batchLimits;
    const vv = leader.followerVv;
    const nowMs = this.#clock.monoMs();
    const self = this.log.origin;
    let start = 0;
    while (start < entries.length) {
      let end = start;
      let count = 0;
      let bytes = 0;
      const frames: Uint8Array[] = [];
      const held: FramedEntry[] = [];
      while (end < entries.length && count < batchEntries) {
        const e = entries[end];
        if ((vv[e.origin] ?? 0) >= e.seq) {
          // held already
        } else if (
          e.origin !== self && this.#servesDirectly(e.origin, leader) && leader.mayDefer(e.origin)
        ) {
          held.push(e);
        } else {
          const frame = entries[end].frame();
          if (count > 0 && bytes + frame.length > batchBytes) break;
          frames.push(frame);
          count++;
          bytes += frame.length;
        }
        end++;
      }
      const more = end < entries.length;
      if (
        count === 0 && start === 0 && !more && !leader.mayShipCursorOnly(session, nowMs)
      ) return false;
      const header = leader.onRead(
        session,
        start === 0 ? fromLsn : entries[start].lsn,
        entries[end - 1].lsn,
        count,
        bytes,
        more,
        nowMs,
      );
      if (!header) {
        if (more) leader.onReadFailed(session);
        break;
      }
      if (!this.#sendBatch(peer, header, count, new ByteParts(frames), heldVv(held))) break;
      for (const e of held) leader.onDeferred(e.origin, e.seq, e.lsn, nowMs);
      start = end;
    }
    return true;
  }

  /** Ships a batch covering `fromLsn..toLsn` with no entry, when the pacing allows one. */
  #sendCursorOnly(
    peer: string,
    leader: LeaderStream,
    session: number,
    fromLsn: number,
    toLsn: number,
  ): void {
    if (!leader.mayShipCursorOnly(session, this.#clock.monoMs())) return;
    const header = leader.onRead(session, fromLsn, toLsn, 0, 0);
    if (header && this.#sendBatch(peer, header, 0, NO_RECORDS)) this.#pump(peer);
  }

  /**
   * Sends one `repl.batch` with the header LeaderStream.onRead() gave, naming the relays it
   * held back (BatchFrame.held); false when refused.
   */
  #sendBatch(
    peer: string,
    header: BatchHeader,
    count: number,
    records: ByteParts,
    held?: VersionVector,
  ): boolean {
    return this.#send(peer, MSG_BATCH, {
      v: REPL_PROTOCOL_VERSION,
      ...header,
      count,
      records,
      lastLsn: this.#bounds().lastLsn,
      ...(held === undefined ? {} : { held }),
    });
  }

  /**
   * Whether `origin`'s entries reach `leader`'s follower without this node, as far as this
   * node can tell: the follower wrote them, or their writer is a peer whose stream from this
   * node is up (so it is alive) and that the follower reports streaming to it (a peer can be
   * alive to this node while its link to the follower is down), and the origin is the one
   * the writer writes under now: an origin it had before a restore or a crash may have lost
   * entries it shipped, which this node then relays at once, the writer itself included. A
   * wrong guess only delays a relay by relayGraceMs (see LeaderStream.onDeferred).
   */
  #servesDirectly(origin: string, leader: LeaderStream): boolean {
    const node = originNode(origin);
    const stream = this.#leaders.get(node);
    if (stream === undefined || stream.status === "down" || stream.status === "opening") {
      return false;
    }
    // A peer that does not name its origin (older versions) is taken to write under this one.
    const current = this.#currentOrigin(node);
    if (current !== undefined && current !== origin) return false;
    return node === leader.peerId || leader.followerStreamsFrom(node);
  }

  /** The origin `node` writes under now: this node's, or as a peer's `repl.opened` named it. */
  #currentOrigin(node: string): string | undefined {
    return node === this.nodeId ? this.log.origin : this.#leaders.get(node)?.followerOrigin;
  }

  /**
   * Starts a copy of the view for `peer`'s transfer. The copy is of the moment of this call and
   * completes over the next turns of the event loop (the view takes writes meanwhile); the
   * transfer starts then, unless the stream moved on to another session or went down.
   */
  #captureSnapshot(peer: string, leader: LeaderStream, session: number): void {
    this.log.captureSnapshot().then(
      (capture) => {
        if (this.#stopped || this.#leaders.get(peer) !== leader) return;
        if (leader.awaitsSnapshot(session)) this.#startTransfer(peer, leader, session, capture);
      },
      (error) => {
        // The stream sees no progress and reopens, which asks for a snapshot again.
        this.#logger.error("Snapshot capture failed", { peer, error: String(error) });
      },
    );
  }

  #startTransfer(
    peer: string,
    leader: LeaderStream,
    session: number,
    capture: CapturedSnapshot,
  ): void {
    const { keys, records } = capture.state;
    // Where each chunk starts; its rows are paired up only when it is sent.
    const chunkStarts = [0];
    let count = 0;
    let bytes = 0;
    for (let i = 0; i < keys.length; i++) {
      if (count >= REPL_SNAPSHOT_CHUNK_KEYS || bytes >= REPL_SNAPSHOT_CHUNK_BYTES) {
        chunkStarts.push(i);
        count = 0;
        bytes = 0;
      }
      count++;
      bytes += keys[i].length + (records[i].value?.length ?? 0);
    }
    // The entries held above a gap go along within the bounds a follower accepts; past them
    // the follower counts only the vector, as before the field existed.
    const ahead = capture.ahead ?? {};
    const fits = Object.keys(ahead).length > 0 &&
      typeof checkAheadRanges(ahead, SNAP_AHEAD_BOUNDS) !== "string";
    this.#snapshots.set(peer, { session, capture, chunkStarts, ...(fits ? { ahead } : {}) });
    this.#logger.info("Snapshot transfer started", {
      peer,
      lsn: capture.lsn,
      keys: keys.length,
      chunks: chunkStarts.length,
    });
    this.#events?.emit("replication.snapshot.started", { follower: peer });
    leader.onSnapshotReady(session, capture.lsn, chunkStarts.length);
    this.#pump(peer);
  }

  #sendChunk(peer: string, session: number, index: number): void {
    const snap = this.#snapshots.get(peer);
    if (!snap || snap.session !== session) return;
    const { keys, records } = snap.capture.state;
    const end = snap.chunkStarts[index + 1] ?? keys.length;
    const last = index === snap.chunkStarts.length - 1;
    const rows: [string, KeyRecord][] = [];
    for (let i = snap.chunkStarts[index]; i < end; i++) rows.push([keys[i], records[i]]);
    this.#send(peer, MSG_SNAP, {
      v: REPL_PROTOCOL_VERSION,
      session,
      lsn: snap.capture.lsn,
      index,
      last,
      vv: snap.capture.versionVector,
      ...(last && snap.ahead !== undefined ? { ahead: snap.ahead } : {}),
      hlc: snap.capture.hlc,
      records: encodeSnapRecords(rows),
    });
  }

  #onOpened(from: string, body: unknown): void {
    const frame = parseOpened(body);
    const leader = this.#leaders.get(from);
    if (!leader) return;
    const opened = leader.onOpened(
      frame,
      this.#clock.monoMs(),
      this.#bounds(),
      this.log.snapshotOnly(),
      { versionVector: this.log.versionVector(), vectorLsn: this.log.vectorLsn() },
    );
    this.#noteOwnOrigin(from, frame.vv);
    const regressions = leader.takeVectorRegressions();
    if (regressions.length > 0) {
      this.#events?.emit("replication.peer.regressed", {
        follower: from,
        origins: regressions.length,
      });
      this.#logger.warn(VECTOR_REGRESSION_WARNING, {
        peer: from,
        origins: regressions.length,
        first: regressions.slice(0, 5),
        advice:
          "A node's version vector counts only durable entries, so this is a fault in Shanghai: report it with both nodes' logs. The snapshot repairs the peer; if GET /v1/digest still differs between the nodes once writes stop and every peer shows replicating, empty that peer's data directory and let it rejoin",
      });
    }
    if (opened) this.#checkWaiters();
    this.#pump(from);
  }

  #onAck(from: string, body: unknown): void {
    const frame = parseAck(body);
    const leader = this.#leaders.get(from);
    if (!leader) return;
    this.#noteOwnOrigin(from, frame.vv);
    const before = leader.window.inflightBytes;
    const advanced = leader.onAck(frame, this.#clock.monoMs());
    if (advanced !== undefined && advanced > 0) {
      const stats = this.#peerStats(from);
      stats.ackedEntries += advanced;
      stats.windowEntries += advanced;
      const bytes = Math.max(0, before - leader.window.inflightBytes);
      stats.ackedBytes += bytes;
      stats.windowBytes += bytes;
    }
    const latenciesMs = leader.takeAckLatencies();
    if (latenciesMs.length > 0) {
      const stats = this.#peerStats(from);
      for (const latencyMs of latenciesMs) stats.windowAckMs += latencyMs;
      stats.windowAcks += latenciesMs.length;
      if (this.#events?.has("replication.acked")) {
        this.#events.emit("replication.acked", { follower: from, latenciesMs });
      }
    }
    this.#releaseTail();
    this.#checkWaiters();
    this.#pump(from);
  }

  /**
   * A peer's vector (from its opened frame or an ack) counts `vv[origin]` entries of this
   * node's own origin. Only this node numbers them, so it numbered that far once; when its own
   * count is lower, its data directory lost some (rolled back, or a disk that lost flushed
   * writes, with no crash marker to give it a new origin: src/node/unsynced.ts). Numbering on
   * from what it holds would give new writes the numbers of entries the peers hold, and they
   * would drop them as duplicates: acknowledged writes lost everywhere but here. So the next
   * write is numbered past the peer's count (the entries in between come back as relays once
   * the peers' relay grace passes), and the event tells the node, which stops to start again
   * under a new origin (src/node/node.ts): its log's positions are ones its peers' cursors
   * count already, so streams resumed from them would skip what it writes now. Writes taken
   * before the first peer answered cannot be told apart; the log line says so.
   */
  #noteOwnOrigin(from: string, vv: VersionVector): void {
    const theirs = vv[this.log.origin];
    const numbered = theirs === undefined ? undefined : this.log.raiseOwnSeq(theirs);
    // Writes held for this check (ShanghaiNode) go on once the number is past the peer's.
    this.#peerVectorSeen.resolve();
    if (numbered === undefined) return;
    this.#events?.emit("replication.origin.behind", { peer: from, numbered, peerHolds: theirs });
    this.#logger.error(OWN_ORIGIN_BEHIND_WARNING, {
      peer: from,
      origin: this.log.origin,
      numberedHere: numbered,
      peerHolds: theirs,
      advice:
        "A node stops now and starts again under a new origin (exit 1: systemd restarts it); its peers then resend what it lacks. Writes it took since it started and before this message may have been numbered like entries the peers hold, and then only this node has them: compare GET /v1/digest across the nodes once writes stop; if they differ, empty its data directory and start it again. Check the disk's write cache, or how the directory was put back: restore backups with shanghai restore",
    });
  }

  /**
   * Resolves once a peer's vector has arrived (its opened frame or an ack) and was checked for
   * more of this node's origin than it has numbered (#noteOwnOrigin).
   */
  get peerVectorSeen(): Promise<void> {
    return this.#peerVectorSeen.promise;
  }

  /** Bytes the tail cache counts for the entries it holds (see TailCache). */
  get tailCacheBytes(): number {
    return this.#tail.bytes;
  }

  /**
   * Lets the tail cache drop what every live stream has acknowledged. Down streams hold
   * nothing, nor do streams whose next entry the cache no longer holds: they read from the log
   * whatever happens, and the cache evicts its oldest entries at its bound, so holding it for
   * them kept only the newest entries, which every other stream had acknowledged, in memory for
   * as long as they stayed behind. A follower stalled under load made each leader keep the
   * whole bound (8 MiB live, about three times that in resident size with the collector's
   * slack for external memory; docs/BENCHMARKS.md, session 43). When every live stream is
   * behind, none releases anything and the cache stays at its bound, as before: the newest
   * entries are then what a stream that catches up from the log reaches last.
   */
  #releaseTail(): void {
    const first = this.#tail.fromLsn;
    let through = Infinity;
    for (const leader of this.#leaders.values()) {
      if (leader.status === "down") continue;
      if (first !== undefined && leader.matchLsn + 1 < first) continue;
      through = Math.min(through, leader.matchLsn);
    }
    if (through !== Infinity) this.#tail.releaseThrough(through);
  }

  #onSnapAck(from: string, body: unknown): void {
    const frame = parseSnapAck(body);
    this.#leaders.get(from)?.onSnapAck(frame, this.#clock.monoMs());
    this.#pump(from);
  }

  // ---- follower side -----------------------------------------------------------------------

  #chain(peer: string, step: () => Promise<void>): void {
    const previous = this.#followerChains.get(peer) ?? Promise.resolve();
    const next = previous.then(step).catch((error) => {
      this.#logger.warn("Replication append failed; the leader will resend", {
        peer,
        error: String(error),
      });
    });
    this.#followerChains.set(peer, next);
  }

  /**
   * The credit this follower grants: REPL_CREDIT_BOOST times the configured credit (100 by
   * default, what a leader starts with) while its WAL queue is shorter than that, so batches
   * pipeline (several per fsync); the base credit once the queue is longer, so a follower whose
   * disk falls behind throttles its leaders back to the base window.
   */
  #credit(): number {
    const base = this.#options.creditEntries ?? REPL_CREDIT_ENTRIES_DEFAULT;
    return this.log.pendingEntries() < base * REPL_CREDIT_BOOST ? base * REPL_CREDIT_BOOST : base;
  }

  #onOpen(from: string, body: unknown): void {
    const frame = parseOpen(body);
    const follower = this.#follower(from);
    const wasStreaming = follower.streaming;
    if (!follower.onOpen(frame)) {
      this.#refuse(
        from,
        `Cannot accept repl.open frame: session ${frame.session} is older than ${follower.session}`,
      );
      return;
    }
    if (!wasStreaming) this.#sourcesChanged();
    // Answer after earlier appends are durable, so the cursor covers them.
    this.#chain(from, () => {
      if (follower.session !== frame.session) return Promise.resolve();
      const succeeds = this.#options.succeeds;
      this.transport.send(from, MSG_OPENED, {
        v: REPL_PROTOCOL_VERSION,
        session: frame.session,
        origin: this.log.origin,
        ...(succeeds === undefined
          ? {}
          : { prevOrigin: succeeds.origin, prevThroughLsn: succeeds.throughLsn }),
        run: this.#run,
        cursor: follower.resumeCursor(),
        vv: this.log.versionVector(),
        credit: this.#credit(),
        sources: this.#sources(),
      });
      return Promise.resolve();
    });
    // A peer that opens a stream to us is up: make sure we stream to it too.
    const leader = this.#leader(from);
    if (leader.status === "down") this.#onPeerUp(from);
  }

  #onBatch(from: string, body: unknown): void {
    const frame = parseBatch(body);
    // Decode and check every entry before the stream or the WAL sees any: all or nothing.
    const entries = decodeBatchEntries(frame);
    for (const entry of entries) {
      try {
        this.log.checkRemote(entry);
      } catch (error) {
        throw new ProtocolError(
          `Cannot accept repl.batch frame: entry ${entry.origin}:${entry.seq}: ${
            (error as Error).message
          }`,
        );
      }
    }
    const follower = this.#follower(from);
    const refusal = follower.onBatch(frame);
    if (refusal !== undefined) {
      this.#refuse(
        from,
        `Cannot accept repl.batch frame ${frame.fromLsn}..${frame.toLsn} of session ${frame.session}: ${refusal}`,
      );
      return;
    }
    // Appends are queued now, in order (the sender's LSNs are ignored); the ack waits until
    // all are durable.
    const appends = this.log.applyRemoteBatch(entries);
    // The chain below handles a failure; this keeps one that comes while an earlier step of
    // the chain still runs from counting as an unhandled rejection.
    appends.catch(() => {});
    this.#chain(from, async () => {
      try {
        await appends;
      } catch (error) {
        follower.onAppendFailed(frame.session);
        throw error;
      }
      follower.onDurable(frame);
      this.transport.send(from, MSG_ACK, {
        v: REPL_PROTOCOL_VERSION,
        session: frame.session,
        ackedLsn: frame.toLsn,
        vv: this.log.versionVector(),
        hlc: this.log.hlc(),
        credit: this.#credit(),
      });
    });
  }

  /**
   * A peer started or stopped streaming to this node: every leader hears of it at the next
   * tick (a status report), so none waits out the relay grace for a peer that cannot deliver
   * here, and none keeps relaying what the peer now ships itself. Only opened frames and
   * status reports carry the list; a batch's ack leaves it out (the leader keeps the last).
   */
  #sourcesChanged(): void {
    this.#lastStatus.clear();
  }

  /** The peers streaming their own log to this node now (see AckFrame.sources). */
  #sources(): string[] {
    const sources: string[] = [];
    for (const [peer, follower] of this.#followers) if (follower.streaming) sources.push(peer);
    return sources;
  }

  #onSnap(from: string, body: unknown): void {
    const frame = parseSnap(body);
    const records = decodeSnapRecords(frame.records);
    const hlc = typeof (body as { hlc?: unknown }).hlc === "number"
      ? (body as { hlc: number }).hlc
      : 0;
    const follower = this.#follower(from);
    const refusal = follower.onSnap(frame);
    if (refusal !== undefined) {
      this.#refuse(
        from,
        `Cannot accept repl.snap chunk ${frame.index} of session ${frame.session}: ${refusal}`,
      );
      return;
    }
    this.#chain(from, async () => {
      this.log.mergeRecords(records, from, frame.index === 0);
      if (frame.last) {
        await this.log.installSnapshot(frame.vv, hlc, from, frame.ahead);
        follower.onSnapshotInstalled(frame.session, frame.lsn);
        this.#logger.info("Installed snapshot from peer", { peer: from, lsn: frame.lsn });
        this.#reopenLacking(from);
      }
      this.transport.send(from, MSG_SNAPACK, {
        v: REPL_PROTOCOL_VERSION,
        session: frame.session,
        index: frame.index,
      });
    });
  }

  /**
   * After a snapshot install: the entries it brought are not in this node's log, so a peer
   * that lacks them can get them from here only as a snapshot. Every stream whose follower
   * may lack them reopens; `opened` brings the follower's fresh version vector, and the
   * leader ships a snapshot if it still lacks any (otherwise the stream just resumes). The
   * peer that sent the snapshot holds them all.
   */
  #reopenLacking(source: string): void {
    const snapshotOnly = this.log.snapshotOnly();
    const now = this.#clock.monoMs();
    for (const [peer, leader] of this.#leaders) {
      if (peer === source || leader.status === "down" || leader.status === "opening") continue;
      if (!leader.lacksAny(snapshotOnly)) continue;
      this.#snapshots.delete(peer);
      leader.reopen(now, this.#bounds());
      this.#pump(peer);
    }
  }

  // ---- quorum reads and read repair --------------------------------------------------------

  #onRead(from: string, body: unknown): void {
    const frame = parseRead(body);
    const record = this.log.getVersion(frame.key);
    this.transport.send(from, MSG_READOK, {
      v: REPL_PROTOCOL_VERSION,
      id: frame.id,
      ...(record
        ? { record: encodeOneEntry(recordToEntry(frame.key, record)) }
        : { record: null, vv: this.log.versionVector() }),
    });
  }

  #onReadOk(from: string, body: unknown): void {
    const frame = parseReadOk(body);
    const read = this.#reads.get(frame.id);
    if (!read || read.replies.has(from)) return;
    const entry = frame.record === null ? null : decodeOneEntry(MSG_READOK, frame.record);
    if (entry !== null && entry.key !== read.key) {
      throw new ProtocolError(
        `Cannot accept repl.readok frame: it answers key ${JSON.stringify(entry.key)}`,
      );
    }
    read.replies.set(from, entry);
    if (entry === null && frame.vv !== undefined) read.emptyVvs.push(frame.vv);
    if (read.replies.size >= read.needed) {
      this.#reads.delete(frame.id);
      read.resolve(read.replies);
    }
  }

  #onRepair(_from: string, body: unknown): void {
    const frame = parseRepair(body);
    const entry = decodeOneEntry(MSG_REPAIR, frame.record);
    const input = stripLsn(entry);
    try {
      this.log.checkRemote(input);
    } catch (error) {
      throw new ProtocolError(`Cannot accept repl.repair frame: ${(error as Error).message}`);
    }
    this.log.applyRemote(input).catch((error) =>
      this.#logger.warn("Read repair failed", { error: String(error) })
    );
  }

  /**
   * Reads `key` from a majority of members (this node included) and returns the newest
   * version, repairing every replica that answered with an older one. Throws AckTimeoutError
   * (a 504) when a majority does not answer within `timeoutMs`.
   */
  async readQuorum(key: string, timeoutMs: number): Promise<Entry | null> {
    const members = this.members();
    const needed = Math.floor(members.length / 2) + 1;
    const local = this.log.getVersion(key);
    const replies = new Map<string, Entry | null>([[
      this.nodeId,
      local ? recordToEntry(key, local) : null,
    ]]);
    // Each reply without a record comes with the vector of the same moment (as peers' do).
    const emptyVvs = local ? [] : [this.log.versionVector()];
    // As in waitForAck: once stopped, no reply arrives and no tick expires the read.
    if (needed > 1 && !this.#stopped) {
      if (this.#reads.size >= WAITERS_MAX) {
        throw new OverloadedError(
          "overloaded",
          `Cannot start a quorum read: ${this.#reads.size} already wait; retry later`,
        );
      }
      const id = ++this.#readId;
      const done = new Promise<Map<string, Entry | null>>((resolve) => {
        this.#reads.set(id, {
          key,
          needed,
          replies,
          emptyVvs,
          deadlineMs: this.#clock.monoMs() + timeoutMs,
          resolve,
        });
      });
      for (const peer of this.transport.connectedPeers()) {
        if (peer !== this.nodeId) {
          this.transport.send(peer, MSG_READ, { v: REPL_PROTOCOL_VERSION, id, key });
        }
      }
      await done;
    }
    if (replies.size < needed) {
      throw new ShanghaiError(
        "timeout",
        `Cannot read with consistency=quorum: ${replies.size} of ${members.length} members answered, ${needed} needed`,
      );
    }
    const newest = [...replies.values()].reduce(newestOf, null);
    // A member that has no record of the key while its vector holds the newest write applied
    // that write and then a delete, and collected the tombstone: the key is gone (a node still
    // catching up, say a replaced disk, can hold the put without the delete). Nothing to repair
    // with: the delete reaches the others as it reached that member.
    if (newest !== null && emptyVvs.some((vv) => (vv[newest.origin] ?? 0) >= newest.seq)) {
      return null;
    }
    if (newest !== null) {
      const repair = { v: REPL_PROTOCOL_VERSION, record: encodeOneEntry(newest) };
      for (const [peer, entry] of replies) {
        if (entry !== null && compareVersions(entry, newest) === 0) continue;
        if (peer === this.nodeId) {
          await this.log.applyRemote(stripLsn(newest)).catch(() => {});
        } else this.transport.send(peer, MSG_REPAIR, repair);
      }
    }
    return newest;
  }

  // ---- acks --------------------------------------------------------------------------------

  /** Every member's id: the configured provider, else this node and every peer seen. */
  members(): string[] {
    return [...this.#memberIds()];
  }

  /**
   * {@link members}, kept while the provider hands back the same array and no peer was first
   * seen since: every quorum write asks for the member count.
   */
  #memberIds(): readonly string[] {
    const source = this.#options.members?.();
    const memo = this.#membersMemo;
    if (
      memo !== undefined && source !== undefined && memo.source === source &&
      memo.known === this.#known.size
    ) return memo.ids;
    const ids = new Set(source ?? []);
    if (ids.size === 0) { for (const peer of this.#known) ids.add(peer); }
    ids.add(this.nodeId);
    this.#membersMemo = { source, known: this.#known.size, ids: [...ids] };
    return this.#membersMemo.ids;
  }

  /** Copies needed for an ack level with the current membership. */
  copiesNeeded(level: AckLevel): number {
    const n = this.#memberIds().length;
    return level === "one" ? 1 : level === "quorum" ? Math.floor(n / 2) + 1 : n;
  }

  /** How many members hold entry `origin:seq` durably, as far as this node has heard. */
  copies(origin: string, seq: number): number {
    let copies = this.log.vectorSeq(origin) >= seq ? 1 : 0;
    for (const [peer, leader] of this.#leaders) {
      if (peer !== this.nodeId && (leader.followerVv[origin] ?? 0) >= seq) copies++;
    }
    return copies;
  }

  /**
   * Waits until `level` is met for this node's write `seq`. Resolves when it is; throws
   * AckTimeoutError (the write stays and keeps replicating) after `timeoutMs`, carrying the
   * causal token `token()` gives then (only a timeout needs one).
   */
  async waitForAck(
    seq: number,
    level: AckLevel,
    timeoutMs: number,
    token: () => string,
  ): Promise<number> {
    const needed = this.copiesNeeded(level);
    let copies = this.copies(this.log.origin, seq);
    // A stopped shipper has no tick left to expire a waiter: a write that became durable
    // after stop() (in flight at a node's stop) is answered at once with the copies known.
    if (copies < needed && !this.#stopped) {
      if (this.#waiters.size >= WAITERS_MAX) {
        throw new OverloadedError(
          "overloaded",
          `Cannot wait for ack=${level}: ${this.#waiters.size} writes already wait; retry later`,
        );
      }
      copies = await new Promise<number>((resolve) => {
        this.#waiters.add({
          origin: this.log.origin,
          seq,
          needed,
          deadlineMs: this.#clock.monoMs() + timeoutMs,
          resolve,
        });
      });
    }
    if (copies < needed) {
      throw new AckTimeoutError(level, copies, needed, this.#memberIds().length, token());
    }
    return copies;
  }

  #checkWaiters(): void {
    if (this.#waiters.size === 0) return;
    const now = this.#clock.monoMs();
    for (const waiter of this.#waiters) {
      const copies = this.copies(waiter.origin, waiter.seq);
      if (copies >= waiter.needed || now >= waiter.deadlineMs) {
        this.#waiters.delete(waiter);
        waiter.resolve(copies);
      }
    }
  }

  // ---- timers, tombstones, views -----------------------------------------------------------

  /** Resends stalled streams, expires waiters and quorum reads, reports lag. */
  tick(): void {
    if (this.#stopped) return;
    this.#openPending();
    const now = this.#clock.monoMs();
    const bounds = this.#bounds();
    for (const [peer, leader] of this.#leaders) {
      leader.tick(now, bounds);
      this.#pump(peer);
      const lag = Math.max(0, bounds.lastLsn - leader.matchLsn);
      if (this.#events && this.#lastLag.get(peer) !== lag) {
        this.#lastLag.set(peer, lag);
        this.#events.emit("replication.lag.changed", { lag, follower: peer, leader: this.nodeId });
      }
      const stats = this.#peerStats(peer);
      const elapsed = now - stats.windowStartMs;
      if (elapsed >= 1000) {
        stats.rateEntries = stats.windowEntries * 1000 / elapsed;
        stats.rateBytes = stats.windowBytes * 1000 / elapsed;
        stats.ackLatencyMs = stats.windowAcks > 0 ? stats.windowAckMs / stats.windowAcks : null;
        stats.windowEntries = 0;
        stats.windowBytes = 0;
        stats.windowAcks = 0;
        stats.windowAckMs = 0;
        stats.windowStartMs = now;
      }
    }
    this.#reportStatus(now);
    this.#reportFollowerLag();
    this.#checkWaiters();
    for (const [id, read] of this.#reads) {
      if (now >= read.deadlineMs) {
        this.#reads.delete(id);
        read.resolve(read.replies);
      }
    }
  }

  /**
   * Emits `replication.lag.changed` from the follower's side (follower = this node) when a
   * stream's lag changes: readiness (src/telemetry/health.ts) turns a node away while it lags.
   * The leader side emits the same event with the peer as follower.
   */
  #reportFollowerLag(): void {
    if (!this.#events) return;
    for (const [peer, follower] of this.#followers) {
      const lag = follower.lag;
      if (this.#lastFollowerLag.get(peer) === lag) continue;
      this.#lastFollowerLag.set(peer, lag);
      this.#events.emit("replication.lag.changed", { lag, follower: this.nodeId, leader: peer });
    }
  }

  #reportStatus(now: number): void {
    // What every report of this tick carries, taken once (nothing changes it during the loop).
    let report: { vv: VersionVector; sources: string[]; text: string } | undefined;
    for (const [peer, follower] of this.#followers) {
      if (follower.session === 0) continue;
      const last = this.#lastStatus.get(peer);
      if (last && now - last.atMs < STATUS_EVERY_MS) continue;
      if (report === undefined) {
        const vv = this.log.versionVector();
        const sources = this.#sources();
        report = { vv, sources, text: JSON.stringify([vv, sources]) };
      }
      if (last && last.report === report.text && now - last.atMs < STATUS_REFRESH_MS) continue;
      this.#lastStatus.set(peer, { atMs: now, report: report.text });
      this.transport.send(peer, MSG_ACK, {
        v: REPL_PROTOCOL_VERSION,
        session: follower.session,
        ackedLsn: follower.statusCursor(),
        vv: report.vv,
        hlc: this.log.hlc(),
        credit: this.#credit(),
        sources: report.sources,
      });
    }
  }

  /**
   * Collects tombstones every member holds and no older write can reach (see
   * Keyspace.collectTombstones). Needs a report from every member; resolves with how many
   * went. The log may take it in steps; what it removes before its first step ends is gone
   * when this returns (all of it with the simulation's log).
   *
   * A write no member has reported yet carries a newer clock than its origin's last report, so
   * it cannot be older than a tombstone below every reported clock: each member's own reported
   * writes must be everywhere. An origin whose node is no longer a member (it left, or was
   * removed while down) reports nothing more, and some member may still relay its older
   * writes: every write of it that any member reported must be everywhere too, or a put older
   * than a tombstone would come back on the nodes that collected it.
   */
  async collectTombstones(): Promise<number> {
    const ownVv = this.log.versionVector();
    const stable: VersionVector = { ...ownVv };
    let belowHlc = this.log.hlc();
    const members = new Set(this.members()).add(this.nodeId);
    const reports: [string, VersionVector][] = [[this.nodeId, ownVv]];
    for (const member of members) {
      if (member === this.nodeId) continue;
      const leader = this.#leaders.get(member);
      if (!leader || leader.followerHlc === 0) return 0;
      const vv = leader.followerVv;
      for (const origin of Object.keys(stable)) {
        stable[origin] = Math.min(stable[origin], vv[origin] ?? 0);
      }
      for (const origin of Object.keys(vv)) if (!(origin in stable)) stable[origin] = 0;
      belowHlc = Math.min(belowHlc, leader.followerHlc);
      reports.push([member, vv]);
    }
    // A member's writes under its current origin that nobody else reported yet are newer than
    // its own last report. Any other origin (a member that left, or an origin a live member
    // wrote under before a restore or a crash, whose entries it may have lost while a peer
    // still relays them) reports nothing more: every write of it anyone reported must be
    // held by all.
    for (const [member, vv] of reports) {
      for (const [origin, seq] of Object.entries(vv)) {
        const owner = originNode(origin);
        const current = members.has(owner) ? this.#currentOrigin(owner) : undefined;
        const mustBeEverywhere = origin === current ? owner === member : true;
        if (mustBeEverywhere && (stable[origin] ?? 0) < seq) return 0;
      }
    }
    const graceMs = this.#options.tombstoneGraceMs ?? TOMBSTONE_GRACE_MS_DEFAULT;
    return await this.log.collectTombstones(stable, belowHlc - graceMs * HLC_PER_MS);
  }

  /** Per-peer replication state, for `GET /v1/replicas` and `shanghai replicas`. */
  replicas(): ReplicaView[] {
    const bounds = this.#bounds();
    const peers = new Set([
      ...this.#leaders.keys(),
      ...this.members().filter((m) => m !== this.nodeId),
    ]);
    return [...peers].sort().map((peer) => {
      const leader = this.#leaders.get(peer);
      const stats = this.#peerStats(peer);
      const followerOffset = leader?.matchLsn ?? 0;
      return {
        peer,
        status: leader?.statusAt(bounds.lastLsn) ?? "down",
        leaderOffset: bounds.lastLsn,
        followerOffset,
        lag: Math.max(0, bounds.lastLsn - followerOffset),
        credit: leader?.window.entriesAvailable ?? 0,
        inflightEntries: leader?.window.inflightEntries ?? 0,
        inflightBytes: leader?.window.inflightBytes ?? 0,
        inflightBatches: leader?.window.inflightBatches ?? 0,
        entriesPerSec: Math.round(stats.rateEntries),
        bytesPerSec: Math.round(stats.rateBytes),
        ackLatencyMs: stats.ackLatencyMs === null
          ? null
          : Math.round(stats.ackLatencyMs * 100) / 100,
        receivedOffset: this.#followers.get(peer)?.cursor ?? 0,
        peerVersionVector: leader === undefined ? {} : { ...leader.followerVv },
      };
    });
  }

  /**
   * Every leader's cursor, for a snapshot to keep (Store option followerCursors): the live
   * streams', and the loaded ones of peers not heard from since the start.
   */
  followerCursors(): Record<string, LeaderCursor> {
    const cursors = { ...this.#resume };
    for (const [peer, follower] of this.#followers) cursors[peer] = follower.resumePoint;
    return cursors;
  }

  /**
   * Lowest LSN a connected peer still needs (for WAL retention); undefined when none does.
   * Down peers hold nothing: one that stays away past the retained tail gets a snapshot, so
   * a dead node can never make the disk fill up.
   */
  retentionHoldLsn(): number | undefined {
    let hold: number | undefined;
    for (const leader of this.#leaders.values()) {
      if (leader.status === "down") continue;
      const need = leader.matchLsn + 1;
      hold = hold === undefined ? need : Math.min(hold, need);
    }
    return hold;
  }
}

/** The relays a batch held back, as origin -> highest sequence; undefined when none. */
function heldVv(held: readonly FramedEntry[]): VersionVector | undefined {
  if (held.length === 0) return undefined;
  const vv: VersionVector = {};
  for (const e of held) if (e.seq > (vv[e.origin] ?? 0)) vv[e.origin] = e.seq;
  return vv;
}
