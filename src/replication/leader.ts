/**
 * The leader side of one replication stream: this node shipping its log to one peer. Pure:
 * it is handed events (peer up/down, frames, reads done, ticks) with the time, and leaves
 * work in its outbox (frames to send, log ranges to read, a snapshot to capture); the shell
 * (shipper.ts) does the I/O and reports back.
 *
 * A stream lives in sessions. Each `open` starts a new session (numbers rise across restarts:
 * `sessionBase` comes from the wall clock); the follower answers with how far it holds this
 * leader's log (its cursor) and its version vector, and the leader resumes from
 * `max(cursor, what it saw acknowledged) + 1`, or ships a snapshot when the log cannot serve
 * what the follower lacks: retention removed that point, or the follower lacks entries this
 * node holds only through a snapshot it installed (they were never in its log). Anything unexpected (a refused frame, a lost ack, a send the transport dropped)
 * ends in the same place: no ack progress for `resendAfterMs`, so the leader opens a new
 * session and resends from the last acknowledged point. Frames of older sessions are ignored.
 *
 * | status        | meaning                                                            |
 * |---------------|--------------------------------------------------------------------|
 * | `down`        | the transport says the peer is unreachable                          |
 * | `opening`     | `open` sent, waiting for `opened`                                   |
 * | `snapshot`    | shipping a snapshot because the follower's point was removed        |
 * | `replicating` | streaming, the follower is close behind                             |
 * | `catching_up` | streaming, more than one batch behind                               |
 * | `paused`      | streaming, but the window is full: waiting for the follower's credit |
 *
 * @module
 */
import { covers, type VersionVector } from "../common/entry.ts";
import { originNode } from "../common/origin.ts";
import { CreditWindow } from "./credit_window.ts";
import {
  type AckFrame,
  MSG_OPEN,
  type OpenedFrame,
  REPL_PROTOCOL_VERSION,
  type SnapAckFrame,
  type Succession,
} from "./frames.ts";

/** Batches one read may fill (see poll()). */
export const READ_BATCHES_MAX = 8;

const NO_LATENCIES: readonly number[] = [];

export type StreamStatus =
  | "down"
  | "opening"
  | "snapshot"
  | "replicating"
  | "catching_up"
  | "paused";

/** Options of a {@link LeaderStream}. */
export interface LeaderOptions {
  peerId: string;
  /** This node's origin, sent in every open: it names this node's log. */
  origin?: string;
  /** Sent in every open when this node's origin replaced another after a crash. */
  succeeds?: Succession;
  /** First session number; sessions count up from here. Use wall-clock ms * 1000. */
  sessionBase: number;
  batchEntriesMax: number;
  batchBytesMax: number;
  windowBytesMax: number;
  windowBatchesMax: number;
  /** Credit assumed until the follower grants its own. */
  creditEntries: number;
  resendAfterMs: number;
  snapshotChunksInflightMax: number;
  /**
   * How long a relay held back for its origin (see {@link LeaderStream.onDeferred}) may stay
   * unconfirmed before this stream rewinds and ships it.
   */
  relayGraceMs: number;
  /**
   * Least time between two batches that carry no entry and only move the follower's cursor
   * (see {@link LeaderStream.mayShipCursorOnly}).
   */
  cursorOnlyEveryMs: number;
}

/** What a `repl.batch` carries besides its entries (see {@link LeaderStream.onRead}). */
export interface BatchHeader {
  session: number;
  startLsn: number;
  fromLsn: number;
  toLsn: number;
}

/** The part of the local log the leader needs to plan reads. */
export interface LogBounds {
  firstLsn: number;
  lastLsn: number;
}

/**
 * What this node's log holds, as its dense version vector counts it: every entry up to
 * `vectorLsn` is counted by `versionVector` (entries past it are durable but not yet applied,
 * or above a gap in their origin's sequence).
 */
export interface LogCoverage {
  versionVector: VersionVector;
  vectorLsn: number;
}

/** An origin the follower reported holding through `reported` and now holds through `holds`. */
export interface VectorRegression {
  origin: string;
  reported: number;
  holds: number;
}

const NO_REGRESSIONS: readonly VectorRegression[] = [];

/** Work for the shell. */
export type LeaderWork =
  | { kind: "send"; type: string; body: unknown }
  | { kind: "read"; session: number; fromLsn: number; entriesMax: number; bytesMax: number }
  | { kind: "snapshot"; session: number }
  | { kind: "sendChunk"; session: number; index: number }
  | { kind: "snapshotDone"; session: number };

interface SnapshotTransfer {
  lsn: number;
  chunks: number;
  nextIndex: number;
  ackedIndex: number;
}

interface DeferredCheckpoint {
  fromLsn: number;
  seq: number;
  sinceMs: number;
}

/** One peer's stream, seen from the leader. */
export class LeaderStream {
  readonly peerId: string;
  readonly #options: LeaderOptions;
  readonly window: CreditWindow;
  #status: StreamStatus = "down";
  #session: number;
  // Invariant: matchLsn < nextLsn once streaming; matchLsn only grows while the follower keeps
  // its origin (see onOpened).
  #nextLsn = 1;
  #startLsn = 1;
  #matchLsn = 0;
  #followerVv: VersionVector = {};
  #followerHlc = 0;
  #followerOrigin: string | undefined;
  // The follower's process as its last `repl.opened` named it (OpenedFrame.run).
  #followerRun: string | undefined;
  // Peers streaming their own log to the follower, as it last reported (undefined: it does
  // not report them, so every live peer is taken to).
  #followerSources: ReadonlySet<string> | undefined;
  #reading = false;
  #lastProgressMs = 0;
  #snapshot: SnapshotTransfer | undefined;
  #snapshotPending = false;
  // The follower came back holding less than it had reported (see #noteRegressions): it gets a
  // snapshot at every open until one is installed there, since a transfer cut short by a link
  // flap or another crash leaves it as short as before while its reports no longer show it.
  #snapshotOwed = false;
  #outbox: LeaderWork[] = [];
  // Highest LSN acknowledged in this session: acks below it are stale. It can sit below
  // matchLsn after a rewind, which resends a range the follower already covered.
  #sessionAckedLsn = 0;
  // Relays held back because their origin serves the follower itself, by origin, oldest
  // first: checkpoints of (lowest LSN, highest seq, when), one per relayGraceMs / 8 of holding.
  // Checkpoints go, oldest first, once the follower reports holding their seq; when the oldest
  // is older than relayGraceMs, the stream rewinds to the lowest LSN of all and ships them.
  #deferred = new Map<string, DeferredCheckpoint[]>();
  // Origins this stream relays again after a rewind, until the follower's version vector
  // holds `seq`: every session starts at or before `fromLsn`, since the follower's cursor
  // already covers that range without them. Acks cannot confirm them (a follower's status
  // ack carries its cursor, not what this session delivered); only the vector does. Still
  // unconfirmed relayGraceMs after `sinceMs`, the stream rewinds again.
  #relaying = new Map<string, { seq: number; fromLsn: number; sinceMs: number }>();
  // When the follower's vector last rose, by origin: an origin whose entries still reach the
  // follower is delivering, only more slowly than the grace (a catch-up of tens of thousands
  // of entries), so its held-back relays stay held until it stops.
  #originProgressMs = new Map<string, number>();
  // When the last cursor-only batch went out, and whether a read that would have made the next
  // one waits for cursorOnlyEveryMs to pass (poll() issues no read until then).
  #cursorOnlySentMs = -Infinity;
  #cursorOnlyHeld = false;
  // Send-to-ack times (ms) of acknowledged batches that held entries, until the shell takes
  // them (takeAckLatencies); at most a window's worth of batches.
  #ackLatenciesMs: number[] = [];
  #regressions: VectorRegression[] = [];

  constructor(options: LeaderOptions) {
    this.#options = options;
    this.peerId = options.peerId;
    this.#session = options.sessionBase;
    this.window = new CreditWindow({
      creditEntries: options.creditEntries,
      bytesMax: options.windowBytesMax,
      batchesMax: options.windowBatchesMax,
    });
  }

  get status(): StreamStatus {
    if (this.#status !== "replicating") return this.#status;
    if (!this.window.hasCredit()) return "paused";
    return this.#status;
  }

  /** Status including whether the follower is more than a batch behind `lastLsn`. */
  statusAt(lastLsn: number): StreamStatus {
    const status = this.status;
    if (status === "replicating" && lastLsn - this.#matchLsn > this.#options.batchEntriesMax) {
      return "catching_up";
    }
    return status;
  }

  get session(): number {
    return this.#session;
  }

  /** Highest LSN of this node's log the follower acknowledged holding. */
  get matchLsn(): number {
    return this.#matchLsn;
  }

  get nextLsn(): number {
    return this.#nextLsn;
  }

  /** The follower's version vector as last reported (only grows). */
  get followerVv(): VersionVector {
    return this.#followerVv;
  }

  get followerHlc(): number {
    return this.#followerHlc;
  }

  /** The origin the follower writes under, as its last `repl.opened` named it (if it did). */
  get followerOrigin(): string | undefined {
    return this.#followerOrigin;
  }

  /**
   * Whether `node` streams its own log to the follower, as the follower last reported; true
   * when it does not report its sources. A live peer that does not (its link to the follower
   * is down) will not deliver its entries there, so relays of them must not wait for it.
   */
  followerStreamsFrom(node: string): boolean {
    return this.#followerSources === undefined || this.#followerSources.has(node);
  }

  get streaming(): boolean {
    return this.#status === "replicating";
  }

  onPeerUp(nowMs: number, log: LogBounds): void {
    this.#open(nowMs, log);
  }

  onPeerDown(): void {
    this.#status = "down";
    this.#session++;
    this.#reset();
  }

  #reset(): void {
    this.window.reset();
    this.#reading = false;
    this.#snapshot = undefined;
    this.#snapshotPending = false;
  }

  #open(nowMs: number, log: LogBounds): void {
    this.#session++;
    this.#reset();
    this.#status = "opening";
    this.#lastProgressMs = nowMs;
    this.#outbox.push({
      kind: "send",
      type: MSG_OPEN,
      body: {
        v: REPL_PROTOCOL_VERSION,
        session: this.#session,
        firstLsn: log.firstLsn,
        lastLsn: log.lastLsn,
        ...(this.#options.origin === undefined ? {} : { origin: this.#options.origin }),
        ...(this.#options.succeeds === undefined ? {} : {
          prevOrigin: this.#options.succeeds.origin,
          prevThroughLsn: this.#options.succeeds.throughLsn,
        }),
      },
    });
  }

  /**
   * The follower came back under a new origin: its data directory was restored from a backup
   * or made anew, so it may lack what it acknowledged before. What this stream knew of it
   * (acknowledged LSN, version vector, relays held back for it) is void: it resumes from its
   * own report, and copies count again from what it reports.
   */
  #forgetFollower(): void {
    this.#matchLsn = 0;
    this.#followerVv = {};
    this.#followerHlc = 0;
    this.#deferred.clear();
    this.#relaying.clear();
    this.#originProgressMs.clear();
    // It resumes from its own report, so the log resends all it lacks.
    this.#snapshotOwed = false;
  }

  /**
   * Notes each origin a restarted follower reports holding less of than it reported before
   * (see {@link takeVectorRegressions}) and returns whether there was one. It must not happen:
   * a node's vector counts only durable entries. When it does, the stream would never send the
   * difference (it takes the follower to hold it) and the two would never converge, which a soak
   * showed while snapshots forgot the entries held above a gap. So what the follower holds now
   * is what counts, and it gets a snapshot, the one transfer that brings every entry this node
   * holds whatever its place in the log. (Within one run there is nothing to check: a vector
   * only grows, and reports of one session come in the order sent; a network that reorders
   * them, as the simulation's does, would only look like a regression.)
   */
  #noteRegressions(vv: VersionVector): boolean {
    let regressed = false;
    for (const [origin, reported] of Object.entries(this.#followerVv)) {
      const holds = vv[origin] ?? 0;
      if (holds >= reported) continue;
      this.#regressions.push({ origin, reported, holds });
      this.#followerVv[origin] = holds;
      regressed = true;
    }
    return regressed;
  }

  /**
   * Origins whose opened frame reported less than the follower had reported before, since the
   * last call: what the shell warns of.
   */
  takeVectorRegressions(): readonly VectorRegression[] {
    if (this.#regressions.length === 0) return NO_REGRESSIONS;
    const taken = this.#regressions;
    this.#regressions = [];
    return taken;
  }

  #mergeVv(vv: VersionVector, nowMs: number): void {
    for (const [origin, seq] of Object.entries(vv)) {
      if (seq > (this.#followerVv[origin] ?? 0)) {
        this.#followerVv[origin] = seq;
        this.#originProgressMs.set(origin, nowMs);
      }
    }
    for (const [origin, checkpoints] of this.#deferred) {
      const holds = this.#followerVv[origin] ?? 0;
      let confirmed = 0;
      while (confirmed < checkpoints.length && checkpoints[confirmed].seq <= holds) confirmed++;
      if (confirmed === checkpoints.length) this.#deferred.delete(origin);
      else if (confirmed > 0) checkpoints.splice(0, confirmed);
    }
    for (const [origin, relay] of this.#relaying) {
      if ((this.#followerVv[origin] ?? 0) >= relay.seq) this.#relaying.delete(origin);
    }
  }

  /**
   * Takes the follower's report of its sources. Relays held back for a peer it no longer
   * names will not come from that peer: they are due at the next tick, not after the grace.
   */
  #setSources(sources: string[] | undefined): void {
    if (sources === undefined) return;
    this.#followerSources = new Set(sources);
    for (const [origin, checkpoints] of this.#deferred) {
      const node = originNode(origin);
      if (node !== this.peerId && !this.#followerSources.has(node)) {
        checkpoints[0].sinceMs = -Infinity;
      }
    }
  }

  /**
   * Whether the shell may hold back a relay of `origin`'s entry (its origin, a live peer of
   * this node, ships it to the follower itself, or is the follower, which wrote it): not
   * while this stream relays that origin again after a rewind. The follower's own entries
   * used to be sent back to it whenever its last reported vector lagged (at 50 clients
   * writing to one node of three, each other node sent it about 65% of its writes back);
   * held back, the next ack's vector confirms them, and an origin that lost its own entries
   * (restored from an older backup) gets them after the grace, like any relay.
   */
  mayDefer(origin: string): boolean {
    return !this.#relaying.has(origin);
  }

  /**
   * The shell held back the relay of `origin`'s entry `seq` at `lsn`. Version vectors are
   * dense, so once the follower reports `origin` at `seq` or above it holds every entry held
   * back; until then tick() watches the grace period.
   */
  onDeferred(origin: string, seq: number, lsn: number, nowMs: number): void {
    let checkpoints = this.#deferred.get(origin);
    if (checkpoints === undefined) this.#deferred.set(origin, checkpoints = []);
    const last = checkpoints[checkpoints.length - 1];
    if (last !== undefined && nowMs - last.sinceMs < this.#options.relayGraceMs / 8) {
      if (seq > last.seq) last.seq = seq;
      // A reopened session scans again from the resume point: LSNs can go back.
      if (lsn < last.fromLsn) last.fromLsn = lsn;
    } else checkpoints.push({ fromLsn: lsn, seq, sinceMs: nowMs });
  }

  /** Origins with relays held back and not yet confirmed (what tests observe). */
  get deferredOrigins(): string[] {
    return [...this.#deferred.keys()];
  }

  /**
   * Whether the follower, as last reported, lacks any entry of `snapshotOnly` (entries this
   * node holds only through an installed snapshot, which its log cannot serve).
   */
  lacksAny(snapshotOnly: VersionVector): boolean {
    for (const [origin, seq] of Object.entries(snapshotOnly)) {
      if ((this.#followerVv[origin] ?? 0) < seq) return true;
    }
    return false;
  }

  /** Starts a new session (the follower answers with its fresh cursor and version vector). */
  reopen(nowMs: number, log: LogBounds): void {
    if (this.#status !== "down") this.#open(nowMs, log);
  }

  /**
   * The follower answered `open`. Returns false when the frame is stale (ignored).
   * `snapshotOnly` is what this node holds only through installed snapshots; `coverage`, when
   * given, lets a follower that holds everything the log counts skip a snapshot the log's
   * retention would otherwise force.
   */
  onOpened(
    frame: OpenedFrame,
    nowMs: number,
    log: LogBounds,
    snapshotOnly: VersionVector = {},
    coverage?: LogCoverage,
  ): boolean {
    if (frame.session !== this.#session || this.#status !== "opening") return false;
    // A new process of the follower (a new run, or a new origin after a crash) holds all it
    // acknowledged (acks follow its fdatasync) and all it reported, unless it was restored or
    // remade under an origin that succeeds none it had.
    let restarted = frame.run !== undefined && this.#followerRun !== undefined &&
      frame.run !== this.#followerRun;
    if (frame.origin !== undefined) {
      if (this.#followerOrigin !== undefined && frame.origin !== this.#followerOrigin) {
        if (frame.succeeds?.origin === this.#followerOrigin) {
          restarted = true;
        } else {
          // Restored or remade: it may hold less than it acknowledged.
          this.#forgetFollower();
          restarted = false;
        }
      }
      this.#followerOrigin = frame.origin;
    }
    if (frame.run !== undefined) this.#followerRun = frame.run;
    if (restarted && this.#noteRegressions(frame.vv)) this.#snapshotOwed = true;
    this.#mergeVv(frame.vv, nowMs);
    this.#setSources(frame.sources);
    this.window.onAck(0, frame.credit);
    this.#lastProgressMs = nowMs;
    let start = Math.max(frame.cursor, this.#matchLsn) + 1;
    // Resend from the first relay held back too long and not acknowledged since: the
    // follower's cursor covers that range without them; it drops what it holds by origin id.
    for (const relay of this.#relaying.values()) start = Math.min(start, relay.fromLsn);
    if (frame.cursor > this.#matchLsn) this.#matchLsn = Math.min(frame.cursor, log.lastLsn);
    if (
      start < log.firstLsn && coverage !== undefined &&
      coverage.vectorLsn >= log.firstLsn - 1 && covers(this.#followerVv, coverage.versionVector)
    ) {
      // Neither side remembers a cursor (both restarted, say), but the follower holds every
      // entry up to vectorLsn, so every entry retention removed: stream from the first one
      // kept (the shell moves the cursor over what the follower holds without reading). A
      // whole cluster restarted after retention used to send full snapshots both ways.
      start = log.firstLsn;
    }
    if (start < log.firstLsn || this.#snapshotOwed || this.lacksAny(snapshotOnly)) {
      this.#status = "snapshot";
      this.#snapshotPending = true;
      this.#outbox.push({ kind: "snapshot", session: this.#session });
      return true;
    }
    this.#startLsn = this.#nextLsn = start;
    this.#sessionAckedLsn = start - 1;
    this.#status = "replicating";
    return true;
  }

  /**
   * Plans the next read when the stream may send: streaming, not already reading, credit
   * left and something new in the log. Call after every event and whenever the log grows.
   */
  poll(nowMs: number, log: LogBounds): void {
    if (this.#status === "snapshot") {
      const snap = this.#snapshot;
      while (
        snap && snap.nextIndex < snap.chunks &&
        snap.nextIndex - snap.ackedIndex - 1 < this.#options.snapshotChunksInflightMax
      ) {
        if (snap.nextIndex === snap.ackedIndex + 1) this.#lastProgressMs = nowMs;
        this.#outbox.push({ kind: "sendChunk", session: this.#session, index: snap.nextIndex++ });
      }
      return;
    }
    if (this.#status !== "replicating" || this.#reading || !this.window.hasCredit()) return;
    if (this.#nextLsn > log.lastLsn) return;
    if (this.#cursorOnlyHeld) {
      if (nowMs - this.#cursorOnlySentMs < this.#options.cursorOnlyEveryMs) return;
      this.#cursorOnlyHeld = false;
    }
    if (this.#nextLsn < log.firstLsn) {
      // Retention removed entries this follower still needs: it gets a snapshot instead.
      this.#status = "snapshot";
      this.#snapshotPending = true;
      this.window.reset();
      this.#outbox.push({ kind: "snapshot", session: this.#session });
      return;
    }
    if (this.window.inflightBatches === 0) this.#lastProgressMs = nowMs;
    this.#reading = true;
    this.#outbox.push({
      kind: "read",
      session: this.#session,
      fromLsn: this.#nextLsn,
      // One read may fill several batches (the shell splits it with batchLimits()): a
      // follower catching up from disk is then not paced by one small read per batch.
      entriesMax: Math.min(
        this.#options.batchEntriesMax * READ_BATCHES_MAX,
        this.window.entriesAvailable,
      ),
      bytesMax: Math.min(
        this.#options.batchBytesMax * READ_BATCHES_MAX,
        this.window.bytesAvailable,
      ),
    });
  }

  /** Most entries and bytes in one batch. */
  get batchLimits(): { entriesMax: number; bytesMax: number } {
    return { entriesMax: this.#options.batchEntriesMax, bytesMax: this.#options.batchBytesMax };
  }

  /**
   * The shell read `fromLsn..toLsn` and is about to send `count` entries (those the follower
   * lacks) of `bytes`. Returns the batch header to send, or undefined when the batch must not
   * go: the read belongs to an older session, or no longer fits the window. A read split into
   * several batches calls this once per batch, in order, with `more` on all but the last.
   * `nowMs` is when it goes out, for the ack latency ({@link takeAckLatencies}).
   */
  onRead(
    session: number,
    fromLsn: number,
    toLsn: number,
    count: number,
    bytes: number,
    more = false,
    nowMs = Number.NaN,
  ): BatchHeader | undefined {
    if (session !== this.#session || !this.#reading || fromLsn !== this.#nextLsn) return undefined;
    if (!more) this.#reading = false;
    if (toLsn < fromLsn) return undefined; // nothing was there after all
    // The follower may have lowered its credit while the read ran: then the batch waits
    // (it is read again later) rather than overrunning the window.
    if (!this.window.hasCredit() || count > this.window.entriesAvailable) return undefined;
    if (this.window.inflightBatches > 0 && bytes > this.window.bytesAvailable) return undefined;
    this.window.onSend(toLsn, count, bytes, nowMs);
    this.#nextLsn = toLsn + 1;
    return { session, startLsn: this.#startLsn, fromLsn, toLsn };
  }

  /**
   * The whole read made one batch with no entry: the follower holds everything in its range or
   * gets it from the entries' origins, so the batch would only move its cursor. Each relayed
   * batch a node applied used to answer with one to every other peer, and each drew an ack.
   * Returns true (send it) at most once per cursorOnlyEveryMs; otherwise the read is dropped
   * and poll() reads the range again, with whatever follows it, once the interval has passed
   * or {@link releaseCursorOnly} is called.
   */
  mayShipCursorOnly(session: number, nowMs: number): boolean {
    if (nowMs - this.#cursorOnlySentMs < this.#options.cursorOnlyEveryMs) {
      this.onReadFailed(session);
      this.#cursorOnlyHeld = true;
      return false;
    }
    this.#cursorOnlySentMs = nowMs;
    return true;
  }

  /** Something the follower needs at once was appended (this node's own entry): read now. */
  releaseCursorOnly(): void {
    this.#cursorOnlyHeld = false;
  }

  /** The read failed (the shell logs why); the next poll tries again. */
  onReadFailed(session: number): void {
    if (session === this.#session) this.#reading = false;
  }

  /** The transport refused a frame (peer gone or its queue full): resend after a pause. */
  onSendRefused(nowMs: number): void {
    if (this.#status === "down") return;
    this.#session++;
    this.#reset();
    this.#status = "opening";
    // Make tick() reopen after resendAfterMs, not at once: the queue needs time to drain.
    this.#lastProgressMs = nowMs;
  }

  /**
   * An ack. Returns the number of LSNs newly acknowledged, or undefined when the ack is
   * refused: another session, behind the acknowledged point, or past what was sent.
   */
  onAck(frame: AckFrame, nowMs: number): number | undefined {
    if (frame.session !== this.#session) return undefined;
    this.#mergeVv(frame.vv, nowMs);
    this.#setSources(frame.sources);
    if (frame.hlc > this.#followerHlc) this.#followerHlc = frame.hlc;
    if (this.#status !== "replicating") return undefined;
    if (frame.ackedLsn >= this.#nextLsn || frame.ackedLsn < this.#sessionAckedLsn) return undefined;
    this.#sessionAckedLsn = frame.ackedLsn;
    const advanced = Math.max(0, frame.ackedLsn - this.#matchLsn);
    if (frame.ackedLsn > this.#matchLsn) this.#matchLsn = frame.ackedLsn;
    for (const batch of this.window.onAck(frame.ackedLsn, frame.credit)) {
      // Cursor-only batches wait for no write at the follower: only batches of entries count.
      if (batch.entries === 0 || Number.isNaN(batch.sentMs)) continue;
      if (this.#ackLatenciesMs.length < this.window.batchesMax) {
        this.#ackLatenciesMs.push(Math.max(0, nowMs - batch.sentMs));
      }
    }
    this.#lastProgressMs = nowMs;
    return advanced;
  }

  /**
   * For each batch of entries acknowledged since the last call: how long (ms) from sending it
   * until the ack arrived, so the follower's receive, append, fdatasync and answer. This is
   * what a write with `ack=quorum` or `all` waits for beyond its own node's sync.
   */
  takeAckLatencies(): readonly number[] {
    if (this.#ackLatenciesMs.length === 0) return NO_LATENCIES;
    const taken = this.#ackLatenciesMs;
    this.#ackLatenciesMs = [];
    return taken;
  }

  /**
   * True while session `session` waits for the shell's snapshot: false once the stream moved
   * on (a new session, the peer down) or the snapshot arrived.
   */
  awaitsSnapshot(session: number): boolean {
    return session === this.#session && this.#snapshotPending;
  }

  /** The shell captured a snapshot at `lsn` in `chunks` chunks. */
  onSnapshotReady(session: number, lsn: number, chunks: number): void {
    if (!this.awaitsSnapshot(session)) return;
    this.#snapshotPending = false;
    this.#snapshot = { lsn, chunks: Math.max(1, chunks), nextIndex: 0, ackedIndex: -1 };
  }

  /** A chunk was installed. Returns false when the ack is refused. */
  onSnapAck(frame: SnapAckFrame, nowMs: number): boolean {
    const snap = this.#snapshot;
    if (frame.session !== this.#session || this.#status !== "snapshot" || !snap) return false;
    if (frame.index <= snap.ackedIndex || frame.index >= snap.nextIndex) return false;
    snap.ackedIndex = frame.index;
    this.#lastProgressMs = nowMs;
    if (snap.ackedIndex === snap.chunks - 1) {
      if (snap.lsn > this.#matchLsn) this.#matchLsn = snap.lsn;
      this.#startLsn = this.#nextLsn = this.#matchLsn + 1;
      this.#sessionAckedLsn = this.#matchLsn;
      this.#snapshot = undefined;
      this.#snapshotOwed = false;
      this.#status = "replicating";
      this.#outbox.push({ kind: "snapshotDone", session: this.#session });
    }
    return true;
  }

  /** Reopens a stream that made no progress for resendAfterMs while it had work out. */
  tick(nowMs: number, log: LogBounds): void {
    if (this.#status === "down") return;
    let rewind = false;
    const grace = this.#options.relayGraceMs;
    for (const [origin, relay] of this.#relaying) {
      if (this.#status === "snapshot" || nowMs - this.#quietSince(origin, relay.sinceMs) < grace) {
        continue;
      }
      // A rewound session did not deliver them (a frame lost or refused after the cursor
      // had passed that range), and nothing of the origin reached the follower for the
      // grace: rewind again.
      relay.sinceMs = nowMs;
      rewind = true;
    }
    for (const [origin, checkpoints] of this.#deferred) {
      if (this.#status === "snapshot") break; // the snapshot brings them; its end confirms
      if (nowMs - this.#quietSince(origin, checkpoints[0].sinceMs) < grace) continue;
      // The origin did not deliver in time (it died, or it cannot reach the follower): this
      // stream ships its entries again from the first one held back.
      rewind = true;
      const seq = Math.max(...checkpoints.map((c) => c.seq));
      const fromLsn = Math.min(...checkpoints.map((c) => c.fromLsn));
      const relay = this.#relaying.get(origin);
      this.#relaying.set(origin, {
        seq: Math.max(seq, relay?.seq ?? 0),
        fromLsn: Math.min(fromLsn, relay?.fromLsn ?? Infinity),
        sinceMs: nowMs,
      });
      this.#deferred.delete(origin);
    }
    if (rewind) {
      this.#open(nowMs, log);
      return;
    }
    const stalled = nowMs - this.#lastProgressMs >= this.#options.resendAfterMs;
    const waiting = this.#status === "opening" || this.#status === "snapshot" ||
      this.window.inflightBatches > 0 || this.#reading;
    if (stalled && waiting) this.#open(nowMs, log);
  }

  /**
   * Since when `origin`'s held-back entries have waited without a sign of delivery: `sinceMs`
   * (when they were held back), or the last time the follower's vector rose for `origin` if
   * later. A catch-up used to rewind both leaders' streams over and over: each held back the
   * other's entries, the other's stream delivered them at the follower's pace, slower than
   * the grace, and every rewind threw away the stream's batches in flight. `sinceMs` of
   * -Infinity (the follower no longer names the origin's node as a source) is due at once.
   */
  #quietSince(origin: string, sinceMs: number): number {
    if (sinceMs === -Infinity) return sinceMs;
    return Math.max(sinceMs, this.#originProgressMs.get(origin) ?? -Infinity);
  }

  /** Returns the pending work and starts an empty outbox. */
  drain(): LeaderWork[] {
    const out = this.#outbox;
    this.#outbox = [];
    return out;
  }
}
