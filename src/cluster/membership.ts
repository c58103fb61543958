/**
 * Cluster membership as a pure state machine (SWIM with the seed's operator states).
 *
 * No sockets, timers, clocks or Math.random() here: the shell (membership_driver.ts) calls
 * {@link Membership.tick} on a timer, {@link Membership.receive} for each message and
 * {@link Membership.onPeerUp} when a connection is made, then drains the outbox into the
 * transport and the event bus. The simulator drives the same object with a fake clock.
 *
 * How it works
 * - Probes: every heartbeat interval a node pings every member it knows (not only one random
 *   member, as SWIM does): the seed's bounds (suspect after 10 s without a heartbeat with
 *   5 s heartbeats) need each member heard from every interval, and at the 3 to 7 nodes we
 *   target that costs a few hundred bytes a second. SWIM's random single probe would make
 *   detection time grow with the cluster size.
 * - Indirect probes: a member that missed its last ack is pinged through k other members
 *   (`cluster.ping-req`); their relayed ack counts as hearing from it, so one bad link does
 *   not get a live member suspected.
 * - Suspicion and incarnations: a member silent for the suspect bound is suspected at its
 *   current incarnation, and declared down at the down bound. Both are gossiped. A live member
 *   that hears it is suspect/down/left at an incarnation >= its own refutes by bumping its
 *   incarnation and gossiping `alive`. Every message carries the sender's incarnation, so a
 *   node that hears from a member it holds as suspect/down tells it so directly (a "notice"),
 *   and the member refutes even after the gossip about it has died out.
 * - Precedence of updates about one member: a higher incarnation wins; at equal incarnation
 *   left > down > suspect > alive.
 * - Dissemination: updates ride on pings and acks (at most GOSSIP_UPDATES_PER_MESSAGE_MAX, the
 *   least sent first), each sent about 3·log2(n+1) times. Full state is exchanged on every new
 *   connection (so on join) and with one random member every SYNC_EVERY_PERIODS periods, which
 *   repairs anything dissemination lost, for example across a healed partition.
 * - Leaving: the node bumps its incarnation, marks itself `left`, and tells every member
 *   directly until each acks or the driver gives up; `left` is final for that incarnation.
 *
 * @module
 */
import { invariant } from "../common/invariant.ts";
import {
  GOSSIP_UPDATES_PER_MESSAGE_MAX,
  INDIRECT_PROBES_K,
  MEMBERS_MAX,
} from "../common/limits.ts";
import type { Random } from "../common/random.ts";
import { createDetector, type DetectorKind, type FailureDetector } from "./failure_detector.ts";

export type MemberState = "up" | "suspect" | "down" | "left";
export const MEMBER_STATES: readonly MemberState[] = ["up", "suspect", "down", "left"];

/** What the cluster knows about one member; the unit of gossip and of full-state sync. */
export interface MemberRecord {
  id: string;
  /** Node port, host:port. */
  address: string;
  /** HTTP API, host:port. */
  httpAddress: string;
  state: MemberState;
  incarnation: number;
}

/** One member as this node sees it. */
export interface Member extends MemberRecord {
  /** When this node last heard from it (driver's clock); undefined if never. */
  lastHeardMs: number | undefined;
  /** When its state last changed here. */
  stateChangedMs: number;
  self: boolean;
}

export type MemberEventKind = "joined" | "up" | "suspect" | "down" | "left";

export interface MemberEvent {
  kind: MemberEventKind;
  nodeId: string;
  state: MemberState;
  previous?: MemberState;
  address: string;
  incarnation: number;
}

export interface HeartbeatEvent {
  rttMs: number;
  fromNode: string;
  toNode: string;
}

export interface Envelope {
  to: string;
  type: string;
  body: unknown;
}

export interface Outbox {
  send: Envelope[];
  events: MemberEvent[];
  heartbeats: HeartbeatEvent[];
}

/** Message types membership puts on the transport. */
export const MESSAGE = {
  ping: "cluster.ping",
  ack: "cluster.ack",
  pingReq: "cluster.ping-req",
  sync: "cluster.sync",
} as const;
export const MESSAGE_TYPES: readonly string[] = Object.values(MESSAGE);

/** Full-state push-pull with one random member every this many probe periods. */
export const SYNC_EVERY_PERIODS = 10;
/** Each gossip update is sent about this many times log2(n+1). */
export const GOSSIP_RETRANSMIT_MULT = 3;
const ID_CHARS_MAX = 64;
const ADDRESS_CHARS_MAX = 300;

export interface MembershipOptions {
  self: { id: string; address: string; httpAddress: string; incarnation: number };
  heartbeatIntervalMs: number;
  suspectAfterMs: number;
  downAfterMs: number;
  detector?: DetectorKind;
  random: Random;
  nowMs: number;
  /** Members remembered from a previous run: listed as down until heard from. */
  known?: readonly { id: string; address: string; httpAddress: string }[];
}

type UpdateKind = "alive" | "suspect" | "down" | "left";
const KINDS: readonly UpdateKind[] = ["alive", "suspect", "down", "left"];
interface Update {
  kind: UpdateKind;
  id: string;
  incarnation: number;
  address: string;
  httpAddress: string;
}
/** Wire form of an update: [kind index, id, incarnation, address, httpAddress]. */
type WireUpdate = [number, string, number, string, string];

interface Pending {
  target: string;
  sentMs: number;
  /** Set when we probe `target` for another member's ping-req. */
  forNode?: string;
  forSeq?: number;
  indirect?: boolean;
}

function kindOf(state: MemberState): UpdateKind {
  return state === "up" ? "alive" : state;
}
function stateOf(kind: UpdateKind): MemberState {
  return kind === "alive" ? "up" : kind;
}

export class Membership {
  readonly selfId: string;
  readonly #options: MembershipOptions;
  readonly #random: Random;
  readonly #detector: FailureDetector;
  #members = new Map<string, Member>();
  // memberIds(), kept until a member joins or changes state (every such change goes through
  // #emit, which drops it).
  #ids: readonly string[] | undefined;
  #gossip = new Map<string, { update: Update; sent: number }>();
  #pending = new Map<number, Pending>();
  #seq = 0;
  #lastTickMs: number | undefined;
  #nextProbeMs: number;
  #periods = 0;
  #lastNoticeMs = new Map<string, number>();
  #lastSyncRequestMs = new Map<string, number>();
  #leaveAcksPending = new Set<string>();
  /** Connected peers whose full state we have not received yet: asked again every period. */
  #syncPending = new Set<string>();
  /** Peers whose full state we have received at least once (see hasSyncedWith). */
  #syncedWith = new Set<string>();
  #outbox: Outbox = { send: [], events: [], heartbeats: [] };
  /** Messages that failed validation (a peer's bug, or garbage that passed the frame CRC). */
  malformedCount = 0;

  constructor(options: MembershipOptions) {
    invariant(
      options.suspectAfterMs < options.downAfterMs,
      "suspect bound must be below down bound",
    );
    this.#options = options;
    this.#random = options.random;
    this.selfId = options.self.id;
    this.#detector = createDetector(options.detector ?? "swim", options);
    this.#members.set(this.selfId, {
      ...options.self,
      state: "up",
      lastHeardMs: options.nowMs,
      stateChangedMs: options.nowMs,
      self: true,
    });
    for (const known of options.known ?? []) {
      if (known.id === this.selfId || this.#members.has(known.id)) continue;
      this.#members.set(known.id, {
        ...known,
        state: "down",
        incarnation: 0,
        lastHeardMs: undefined,
        stateChangedMs: options.nowMs,
        self: false,
      });
    }
    this.#nextProbeMs = options.nowMs;
  }

  get self(): Member {
    return this.#members.get(this.selfId)!;
  }

  get incarnation(): number {
    return this.self.incarnation;
  }

  get left(): boolean {
    return this.self.state === "left";
  }

  /** Every member, self included, sorted by id. */
  members(): Member[] {
    return [...this.#members.values()].map((m) => ({ ...m })).sort((a, b) => a.id < b.id ? -1 : 1);
  }

  /**
   * The ids of every member that has not left, self included, sorted: who a quorum counts,
   * down members included. The same array until the membership changes, then a new one.
   */
  memberIds(): readonly string[] {
    return this.#ids ??= [...this.#members.values()].filter((m) => m.state !== "left")
      .map((m) => m.id).sort();
  }

  /**
   * Whether `peerId`'s full member list has arrived (a sync message): a node that joins
   * through a seed knows the cluster's members, and so its quorum size, only from then on.
   */
  hasSyncedWith(peerId: string): boolean {
    return this.#syncedWith.has(peerId);
  }

  /** Whether any peer's full member list has arrived. */
  hasSyncedWithAny(): boolean {
    return this.#syncedWith.size > 0;
  }

  member(id: string): Member | undefined {
    const m = this.#members.get(id);
    return m ? { ...m } : undefined;
  }

  /** Returns the pending outbox and starts an empty one. */
  drain(): Outbox {
    const out = this.#outbox;
    this.#outbox = { send: [], events: [], heartbeats: [] };
    return out;
  }

  /** True once every member told of our leaving has acknowledged it. */
  leaveAcknowledged(): boolean {
    return this.left && this.#leaveAcksPending.size === 0;
  }

  /** Advances time: starts a probe period when due, expires probes, applies the detector. */
  tick(nowMs: number): void {
    this.self.lastHeardMs = nowMs;
    // A long gap between our own ticks means this process was not running (SIGSTOP, a VM
    // pause, a stalled event loop): the silence of others during it says nothing about them,
    // so it must not make us suspect them (Lifeguard's "local health" idea, in its simplest form).
    const pausedMs = this.#lastTickMs === undefined ? 0 : nowMs - this.#lastTickMs;
    this.#lastTickMs = nowMs;
    if (pausedMs > this.#options.suspectAfterMs / 2) {
      for (const m of this.#members.values()) {
        if (!m.self && (m.state === "up" || m.state === "suspect")) {
          this.#detector.heard(m.id, nowMs);
        }
      }
    }
    if (this.left) {
      if (nowMs >= this.#nextProbeMs) {
        this.#nextProbeMs = nowMs + this.#options.heartbeatIntervalMs;
        for (const id of this.#leaveAcksPending) this.#ping(id, nowMs, [this.#recordOf(this.self)]);
      }
      return;
    }
    if (nowMs >= this.#nextProbeMs) {
      this.#nextProbeMs = nowMs + this.#options.heartbeatIntervalMs;
      this.#probePeriod(nowMs);
    }
    const expireMs = Math.max(2 * this.#options.heartbeatIntervalMs, this.#options.suspectAfterMs);
    for (const [seq, p] of this.#pending) {
      if (nowMs - p.sentMs > expireMs) this.#pending.delete(seq);
    }
    for (const m of this.#members.values()) {
      if (m.self || (m.state !== "up" && m.state !== "suspect")) continue;
      const verdict = this.#detector.verdict(m.id, nowMs);
      if (verdict === "alive") continue;
      if (m.state === "up") this.#setState(m, "suspect", m.incarnation, nowMs);
      if (verdict === "down") this.#setState(m, "down", m.incarnation, nowMs);
    }
  }

  /** A transport connection to `peerId` was established: exchange full state with it. */
  onPeerUp(peerId: string, _nowMs: number): void {
    if (peerId === this.selfId) return;
    this.#syncPending.add(peerId);
    this.#sendSync(peerId, true);
  }

  /** The transport connection to `peerId` was lost; the detector, not this, decides its state. */
  onPeerDown(peerId: string, _nowMs: number): void {
    this.#syncPending.delete(peerId);
  }

  /** Leaves the cluster gracefully: announce `left` to every member until each acks. */
  leave(nowMs: number): void {
    if (this.left) return;
    const self = this.self;
    const previous = self.state;
    self.incarnation++;
    self.state = "left";
    self.stateChangedMs = nowMs;
    this.#emit(self, previous);
    this.#enqueue(this.#recordOf(self));
    for (const m of this.#members.values()) {
      // Down members cannot ack; they learn of the leave from the full-state sync on return.
      if (m.self || m.state === "left" || m.state === "down") continue;
      this.#leaveAcksPending.add(m.id);
    }
    this.#nextProbeMs = nowMs + this.#options.heartbeatIntervalMs;
    for (const id of this.#leaveAcksPending) this.#ping(id, nowMs, [this.#recordOf(self)]);
  }

  /**
   * Removes a member that is down (or suspect) for good on the operator's word: marks it
   * `left` at its current incarnation. A member that is in fact alive refutes and comes back.
   */
  remove(
    id: string,
    nowMs: number,
  ): "removed" | "not_found" | "is_self" | "is_up" | "already_left" {
    const m = this.#members.get(id);
    if (!m) return "not_found";
    if (m.self) return "is_self";
    if (m.state === "left") return "already_left";
    if (m.state === "up") return "is_up";
    this.#setState(m, "left", m.incarnation, nowMs);
    return "removed";
  }

  /** Handles one message from `from`; returns false (and changes nothing) if it is malformed. */
  receive(from: string, type: string, body: unknown, nowMs: number): boolean {
    const msg = parseMessage(type, body);
    if (!msg || from === this.selfId) {
      this.malformedCount++;
      return false;
    }
    if (this.left) {
      if (msg.type === MESSAGE.ping) {
        this.#send(from, MESSAGE.ack, {
          s: msg.s,
          i: this.incarnation,
          g: [toWire(this.#recordOf(this.self))],
        });
      } else if (msg.type === MESSAGE.ack) {
        this.#leaveAcksPending.delete(from);
      }
      return true;
    }
    this.#touch(from, msg.i, nowMs);
    for (const u of msg.g) this.#apply(u, nowMs);
    switch (msg.type) {
      case MESSAGE.ping:
        this.#send(from, MESSAGE.ack, { s: msg.s, i: this.incarnation, g: this.#piggyback() });
        break;
      case MESSAGE.ack:
        this.#onAck(from, msg.s, msg.v, nowMs);
        break;
      case MESSAGE.pingReq: {
        const target = this.#members.get(msg.t);
        if (!target || target.self || target.state === "left") break;
        const seq = ++this.#seq;
        this.#pending.set(seq, { target: msg.t, sentMs: nowMs, forNode: from, forSeq: msg.s });
        this.#send(msg.t, MESSAGE.ping, { s: seq, i: this.incarnation, g: this.#piggyback() });
        break;
      }
      case MESSAGE.sync:
        this.#syncPending.delete(from);
        this.#syncedWith.add(from);
        if (msg.r) this.#sendSync(from, false);
        break;
    }
    return true;
  }

  #probePeriod(nowMs: number): void {
    this.#periods++;
    const live: Member[] = [];
    for (const m of this.#members.values()) {
      if (m.self || m.state === "left") continue;
      this.#ping(m.id, nowMs, []);
      if (m.state === "up") live.push(m);
    }
    // Indirect probes for members that missed their last ack.
    for (const m of this.#members.values()) {
      if (m.self || (m.state !== "up" && m.state !== "suspect")) continue;
      const last = this.#detector.lastHeardMs(m.id) ?? nowMs;
      if (nowMs - last <= 1.5 * this.#options.heartbeatIntervalMs) continue;
      const helpers = this.#random.shuffle(live.filter((h) => h.id !== m.id)).slice(
        0,
        INDIRECT_PROBES_K,
      );
      for (const helper of helpers) {
        const seq = ++this.#seq;
        this.#pending.set(seq, { target: m.id, sentMs: nowMs, indirect: true });
        this.#send(helper.id, MESSAGE.pingReq, {
          s: seq,
          i: this.incarnation,
          t: m.id,
          g: this.#piggyback(),
        });
      }
    }
    for (const id of this.#syncPending) this.#sendSync(id, true);
    if (this.#periods % SYNC_EVERY_PERIODS === 0 && live.length > 0) {
      this.#sendSync(this.#random.pick(live).id, true);
    }
  }

  #ping(to: string, nowMs: number, extra: Update[]): void {
    const seq = ++this.#seq;
    this.#pending.set(seq, { target: to, sentMs: nowMs });
    const g = [
      ...extra.map(toWire),
      ...this.#piggyback(GOSSIP_UPDATES_PER_MESSAGE_MAX - extra.length),
    ];
    this.#send(to, MESSAGE.ping, { s: seq, i: this.incarnation, g });
  }

  #onAck(from: string, seq: number, vouched: string | undefined, nowMs: number): void {
    const p = this.#pending.get(seq);
    if (!p) return;
    if (p.indirect) {
      // An ack relayed by a helper: the target answered it.
      if (vouched === p.target) this.#heardIndirectly(p.target, nowMs);
      return;
    }
    if (p.target !== from) return;
    this.#pending.delete(seq);
    if (p.forNode !== undefined) {
      this.#send(p.forNode, MESSAGE.ack, {
        s: p.forSeq,
        i: this.incarnation,
        v: from,
        g: this.#piggyback(),
      });
      return;
    }
    this.#detector.sample(from, nowMs);
    this.#outbox.heartbeats.push({ rttMs: nowMs - p.sentMs, fromNode: this.selfId, toNode: from });
  }

  #heardIndirectly(id: string, nowMs: number): void {
    const m = this.#members.get(id);
    if (!m || m.self) return;
    m.lastHeardMs = nowMs;
    this.#detector.heard(id, nowMs);
  }

  /** Every message is direct evidence about its sender. */
  #touch(from: string, incarnation: number, nowMs: number): void {
    const m = this.#members.get(from);
    if (!m) return; // Unknown until its full-state sync arrives (it carries the address).
    // A higher incarnation than we hold means it restarted or refuted, perhaps on a new
    // address that only it can tell us: ask for its full state rather than gossip a record
    // with the address we have (which may be stale, and may by now be another node's port).
    if (incarnation > m.incarnation) this.#requestSync(m, nowMs);
    m.lastHeardMs = nowMs;
    this.#detector.heard(from, nowMs);
    if (m.state !== "up" && incarnation <= m.incarnation) this.#notice(m, nowMs);
  }

  #requestSync(m: Member, nowMs: number): void {
    const last = this.#lastSyncRequestMs.get(m.id);
    if (last !== undefined && nowMs - last < this.#options.heartbeatIntervalMs / 2) return;
    this.#lastSyncRequestMs.set(m.id, nowMs);
    this.#sendSync(m.id, true);
  }

  /** Tells a member we hold as suspect/down/left so, so that it refutes if it is alive. */
  #notice(m: Member, nowMs: number): void {
    const last = this.#lastNoticeMs.get(m.id);
    if (last !== undefined && nowMs - last < this.#options.heartbeatIntervalMs / 2) return;
    this.#lastNoticeMs.set(m.id, nowMs);
    this.#ping(m.id, nowMs, [this.#recordOf(m)]);
  }

  #apply(u: Update, nowMs: number): void {
    if (u.id === this.selfId) {
      const self = this.self;
      const refute = u.kind === "alive"
        ? u.incarnation > self.incarnation
        : u.incarnation >= self.incarnation;
      if (refute) {
        self.incarnation = u.incarnation + 1;
        this.#enqueue(this.#recordOf(self));
      }
      return;
    }
    const known = this.#members.get(u.id);
    if (!known) {
      if (this.#members.size >= MEMBERS_MAX) return;
      const m: Member = {
        id: u.id,
        address: u.address,
        httpAddress: u.httpAddress,
        state: stateOf(u.kind),
        incarnation: u.incarnation,
        lastHeardMs: undefined,
        stateChangedMs: nowMs,
        self: false,
      };
      this.#members.set(u.id, m);
      if (m.state === "up" || m.state === "suspect") this.#detector.reset(u.id, nowMs);
      this.#emit(m, undefined);
      this.#enqueue(u);
      return;
    }
    const newer = u.incarnation > known.incarnation ||
      (u.incarnation === known.incarnation &&
        KINDS.indexOf(u.kind) > KINDS.indexOf(kindOf(known.state)));
    if (!newer) return;
    if (u.kind === "alive") {
      known.address = u.address;
      known.httpAddress = u.httpAddress;
      // Fresh evidence: the member just refuted, so its silence restarts now.
      this.#detector.reset(u.id, nowMs);
    }
    this.#setState(known, stateOf(u.kind), u.incarnation, nowMs);
  }

  #setState(m: Member, state: MemberState, incarnation: number, nowMs: number): void {
    const previous = m.state;
    m.incarnation = incarnation;
    m.state = state;
    this.#enqueue(this.#recordOf(m));
    if (previous === state) return;
    m.stateChangedMs = nowMs;
    if (state === "left") this.#detector.forget(m.id);
    if (state === "up" && previous !== "suspect") this.#detector.reset(m.id, nowMs);
    this.#emit(m, previous);
  }

  #emit(m: Member, previous: MemberState | undefined): void {
    this.#ids = undefined;
    const kind: MemberEventKind = previous === undefined
      ? "joined"
      : m.state === "up"
      ? "up"
      : m.state;
    this.#outbox.events.push({
      kind,
      nodeId: m.id,
      state: m.state,
      ...(previous === undefined ? {} : { previous }),
      address: m.address,
      incarnation: m.incarnation,
    });
  }

  #recordOf(m: MemberRecord): Update {
    return {
      kind: kindOf(m.state),
      id: m.id,
      incarnation: m.incarnation,
      address: m.address,
      httpAddress: m.httpAddress,
    };
  }

  #enqueue(u: Update): void {
    this.#gossip.set(u.id, { update: u, sent: 0 });
  }

  #piggyback(max: number = GOSSIP_UPDATES_PER_MESSAGE_MAX): WireUpdate[] {
    if (this.#gossip.size === 0 || max <= 0) return [];
    let live = 0;
    for (const m of this.#members.values()) if (m.state !== "left") live++;
    const limit = GOSSIP_RETRANSMIT_MULT * Math.ceil(Math.log2(live + 1));
    const chosen = [...this.#gossip.values()].sort((a, b) => a.sent - b.sent).slice(0, max);
    for (const item of chosen) {
      item.sent++;
      if (item.sent >= limit) this.#gossip.delete(item.update.id);
    }
    return chosen.map((item) => toWire(item.update));
  }

  #sendSync(to: string, reply: boolean): void {
    const m: WireUpdate[] = [];
    for (const member of this.#members.values()) m.push(toWire(this.#recordOf(member)));
    this.#send(to, MESSAGE.sync, { i: this.incarnation, m, r: reply });
  }

  #send(to: string, type: string, body: unknown): void {
    this.#outbox.send.push({ to, type, body });
  }
}

// ---- Message validation: everything from a peer is checked before it is used. ----

type Message =
  | { type: typeof MESSAGE.ping; s: number; i: number; g: Update[] }
  | { type: typeof MESSAGE.ack; s: number; i: number; g: Update[]; v?: string }
  | { type: typeof MESSAGE.pingReq; s: number; i: number; g: Update[]; t: string }
  | { type: typeof MESSAGE.sync; s: 0; i: number; g: Update[]; r: boolean };

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}
function isId(v: unknown): v is string {
  return typeof v === "string" && v.length > 0 && v.length <= ID_CHARS_MAX;
}
function isAddress(v: unknown): v is string {
  return typeof v === "string" && v.length <= ADDRESS_CHARS_MAX;
}

function toWire(u: Update): WireUpdate {
  return [KINDS.indexOf(u.kind), u.id, u.incarnation, u.address, u.httpAddress];
}

function fromWire(raw: unknown): Update | undefined {
  if (!Array.isArray(raw) || raw.length !== 5) return undefined;
  const [k, id, incarnation, address, httpAddress] = raw;
  if (!isCount(k) || k >= KINDS.length || !isId(id) || !isCount(incarnation)) return undefined;
  if (!isAddress(address) || !isAddress(httpAddress)) return undefined;
  return { kind: KINDS[k], id, incarnation, address, httpAddress };
}

function updatesOf(raw: unknown, max: number): Update[] | undefined {
  if (!Array.isArray(raw) || raw.length > max) return undefined;
  const out: Update[] = [];
  for (const item of raw) {
    const u = fromWire(item);
    if (!u) return undefined;
    out.push(u);
  }
  return out;
}

/** Validates a membership message; undefined if anything is off. */
export function parseMessage(type: string, body: unknown): Message | undefined {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return undefined;
  const b = body as Record<string, unknown>;
  if (!isCount(b.i)) return undefined;
  if (type === MESSAGE.sync) {
    const m = updatesOf(b.m, MEMBERS_MAX);
    if (!m || typeof b.r !== "boolean") return undefined;
    return { type, s: 0, i: b.i, g: m, r: b.r };
  }
  const g = updatesOf(b.g, GOSSIP_UPDATES_PER_MESSAGE_MAX);
  if (!g || !isCount(b.s)) return undefined;
  switch (type) {
    case MESSAGE.ping:
      return { type, s: b.s, i: b.i, g };
    case MESSAGE.ack:
      if (b.v !== undefined && !isId(b.v)) return undefined;
      return { type, s: b.s, i: b.i, g, ...(b.v === undefined ? {} : { v: b.v as string }) };
    case MESSAGE.pingReq:
      if (!isId(b.t)) return undefined;
      return { type, s: b.s, i: b.i, g, t: b.t };
  }
  return undefined;
}
