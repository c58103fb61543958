/**
 * The follower side of one replication stream: this node receiving one leader's log. Pure:
 * it decides whether a frame is accepted; the shell appends accepted entries to the WAL and
 * acknowledges only after they are durable.
 *
 * Order rule: within a session, batch `fromLsn` must equal the end of the previous accepted
 * batch + 1, and the session's first batch must start at the session's `startLsn`. So a
 * duplicated, reordered or stale frame is refused without effect, and a gap (a lost frame)
 * is refused too: the leader sees no ack and reopens the stream from the acknowledged point.
 *
 * @module
 */
import type { VersionVector } from "../common/entry.ts";
import type { LeaderCursor } from "../storage/kv/snapshot.ts";
import type { BatchFrame, OpenFrame, SnapFrame } from "./frames.ts";

/** Why a frame was refused. */
export type Refusal = "stale session" | "out of order" | "no session";

/** Ranges with held-back relays one stream remembers; more are merged (see #addHole). */
export const FOLLOWER_HOLES_MAX = 64;

/** This node's count of an origin's entries (its version vector, read one origin at a time). */
export type HeldSeq = (origin: string) => number;

/** A range of the leader's log the cursor passed without some of its relays (held back). */
interface Hole {
  fromLsn: number;
  held: VersionVector;
}

/** One leader's stream, seen from the follower. */
export class FollowerStream {
  readonly leaderId: string;
  #session = 0;
  // Next fromLsn accepted in this session; undefined until its first batch.
  #expectedLsn: number | undefined;
  // Invariant: every entry of the leader's log up to cursor is durable here, except relays
  // the leader held back in the holes below.
  #cursor = 0;
  // Ranges the cursor passed while the leader held back relays in them (their origin was to
  // ship them here itself), until this node holds those relays. The leader remembers what it
  // held back only in memory: one that restarted must resume at or before the first hole, or
  // relays whose origin then died would never come (see resumeCursor).
  #holes: Hole[] = [];
  // Highest toLsn of this session's batches (or its snapshot's LSN) durable here; 0: none yet.
  #sessionDurableLsn = 0;
  #snapNext = 0;
  #snapLsn = 0;
  // The leader's origin as its open frames name it: a new one numbers its log anew.
  #leaderOrigin: string | undefined;
  // The first session of that origin: appends of earlier sessions no longer move the cursor.
  #originSession = 0;
  #streaming = false;
  readonly #holds: HeldSeq;

  /**
   * `holds` is this node's count of an origin's entries (its version vector), which closes
   * the holes. `resume`, when given, is the cursor a snapshot of this data directory kept for
   * this leader (Store.followerCursors): the stream reports it on the first open instead of
   * 0, unless the leader opens under another origin.
   */
  constructor(leaderId: string, holds: HeldSeq, resume?: LeaderCursor) {
    this.leaderId = leaderId;
    this.#holds = holds;
    if (resume !== undefined) {
      this.#cursor = resume.cursor;
      this.#leaderOrigin = resume.origin;
    }
  }

  /** The resume cursor and the leader origin it counts, as a snapshot keeps them. */
  get resumePoint(): LeaderCursor {
    return {
      ...(this.#leaderOrigin === undefined ? {} : { origin: this.#leaderOrigin }),
      cursor: this.resumeCursor(),
    };
  }

  /**
   * Where the leader may resume without losing anything: the cursor, or just before the
   * first range whose held-back relays this node does not hold yet. What `repl.opened`
   * reports and a snapshot keeps (see statusCursor for status acks).
   */
  resumeCursor(): number {
    this.#pruneHoles();
    let resume = this.#cursor;
    for (const hole of this.#holes) resume = Math.min(resume, hole.fromLsn - 1);
    return resume;
  }

  /** Holes whose relays this node now holds are closed. */
  #pruneHoles(): void {
    if (this.#holes.length === 0) return;
    this.#holes = this.#holes.filter((hole) => !this.#holdsAll(hole.held));
  }

  #holdsAll(held: VersionVector): boolean {
    for (const origin in held) if (this.#holds(origin) < held[origin]) return false;
    return true;
  }

  #addHole(fromLsn: number, held: VersionVector): void {
    this.#pruneHoles();
    if (this.#holdsAll(held)) return;
    if (this.#holes.length >= FOLLOWER_HOLES_MAX) {
      // Merged into the newest: the resume point can only move earlier, never past a relay.
      const last = this.#holes[this.#holes.length - 1];
      last.fromLsn = Math.min(last.fromLsn, fromLsn);
      for (const [origin, seq] of Object.entries(held)) {
        if (seq > (last.held[origin] ?? 0)) last.held[origin] = seq;
      }
      return;
    }
    this.#holes.push({ fromLsn, held: { ...held } });
  }

  /**
   * What a status report acknowledges: the end of what this session delivered, or the resume
   * cursor before its first batch. Not the cursor: a session that resumed below it (a leader
   * that restarted, or rewound to relay) has not delivered the range between, and a status
   * report that acknowledged it released the leader's batches in flight there, delivered or
   * lost.
   */
  statusCursor(): number {
    return this.#sessionDurableLsn > 0 ? this.#sessionDurableLsn : this.resumeCursor();
  }

  /** Ranges with held-back relays this node does not hold yet (what tests observe). */
  get holes(): number {
    return this.#holes.length;
  }

  get cursor(): number {
    return this.#cursor;
  }

  /** The leader's last LSN as last heard (open and batch frames carry it). */
  leaderLastLsn = 0;

  /** Entries of the leader's log not yet durable here, as far as this node knows. */
  get lag(): number {
    return Math.max(0, this.leaderLastLsn - this.#cursor);
  }

  get session(): number {
    return this.#session;
  }

  /**
   * Whether the leader streams its log to this node now: it opened a session since the link
   * last went down. Leaders of this node's other streams hold back relays of its entries only
   * while this holds (the follower reports it as a source).
   */
  get streaming(): boolean {
    return this.#streaming;
  }

  /** The link to the leader went down: it streams nothing until it opens again. */
  onLinkDown(): void {
    this.#streaming = false;
  }

  /** Accepts an `open` of a newer session (true), or refuses an older one (false). */
  onOpen(frame: OpenFrame): boolean {
    if (frame.session < this.#session) return false;
    if (frame.origin !== undefined) {
      if (this.#leaderOrigin !== undefined && frame.origin !== this.#leaderOrigin) {
        // A restored or remade leader: the cursor counted a log that is gone. A leader that
        // crashed and took a new origin kept its log up to where it restarted; past that
        // point its LSNs may name other entries now.
        this.#cursor = frame.succeeds?.origin === this.#leaderOrigin
          ? Math.min(this.#cursor, frame.succeeds.throughLsn)
          : 0;
        // The holes of a log that is gone mean nothing; a succeeded log's stay as they were.
        if (this.#cursor === 0) this.#holes = [];
        this.leaderLastLsn = 0;
        this.#originSession = frame.session;
      }
      this.#leaderOrigin = frame.origin;
    }
    if (frame.lastLsn > this.leaderLastLsn) this.leaderLastLsn = frame.lastLsn;
    this.#streaming = true;
    if (frame.session > this.#session) {
      this.#session = frame.session;
      this.#expectedLsn = undefined;
      this.#snapNext = 0;
      this.#sessionDurableLsn = 0;
    }
    return true;
  }

  /** Checks a batch's place in the stream; on acceptance the stream expects the next range. */
  onBatch(frame: BatchFrame): Refusal | undefined {
    if (this.#session === 0) return "no session";
    if (frame.session !== this.#session) return "stale session";
    const expected = this.#expectedLsn ?? frame.startLsn;
    if (frame.fromLsn !== expected) return "out of order";
    this.#expectedLsn = frame.toLsn + 1;
    if (frame.lastLsn > this.leaderLastLsn) this.leaderLastLsn = frame.lastLsn;
    return undefined;
  }

  /** Appending a batch failed: refuse the rest of this session until the leader reopens. */
  onAppendFailed(session: number): void {
    if (session === this.#session) this.#expectedLsn = -1;
  }

  /**
   * Every entry of the leader's log up to the batch's `toLsn`, as of its session, is durable
   * here, but for the relays it held back (`held`, see BatchFrame.held).
   */
  onDurable(batch: Pick<BatchFrame, "session" | "fromLsn" | "toLsn" | "held">): void {
    const { session, toLsn } = batch;
    if (session < this.#originSession) return;
    if (batch.held !== undefined) this.#addHole(batch.fromLsn, batch.held);
    if (toLsn > this.#cursor) this.#cursor = toLsn;
    if (session === this.#session && toLsn > this.#sessionDurableLsn) {
      this.#sessionDurableLsn = toLsn;
    }
  }

  /** Checks a snapshot chunk's place: chunks of a session arrive in index order. */
  onSnap(frame: SnapFrame): Refusal | undefined {
    if (this.#session === 0) return "no session";
    if (frame.session !== this.#session) return "stale session";
    if (frame.index !== this.#snapNext) return "out of order";
    if (frame.index > 0 && frame.lsn !== this.#snapLsn) return "out of order";
    this.#snapLsn = frame.lsn;
    this.#snapNext++;
    return undefined;
  }

  /** The snapshot at the leader's `lsn` is durable here: the tail follows from lsn + 1. */
  onSnapshotInstalled(session: number, lsn: number): void {
    if (session >= this.#originSession && lsn > this.#cursor) this.#cursor = lsn;
    if (session === this.#session) {
      this.#expectedLsn = lsn + 1;
      if (lsn > this.#sessionDurableLsn) this.#sessionDurableLsn = lsn;
    }
  }
}
