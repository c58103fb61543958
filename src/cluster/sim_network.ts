/**
 * A seeded, in-process network for tests: links that drop, delay, duplicate and reorder
 * messages, nodes that crash and restart, and partitions. Each node gets a
 * {@link SimTransport}, an implementation of {@link PeerTransport}; time moves only when the
 * test calls {@link SimNetwork.advanceTo}, so a run replays exactly from its seed.
 *
 * Links behave like the TCP transport's connections: a node must `dial` a peer before it can
 * send to it; a crash or a partition drops the link (peerDown on both sides) and the nodes
 * must dial again after it heals. Loss and duplication model what a real network and restarts
 * do to a message stream; bodies are CBOR round-tripped like on the wire.
 *
 * @module
 */
import { Random } from "../common/random.ts";
import { decodePayload, encodeFrame } from "./frame.ts";
import { PeerTransportBase } from "./transport.ts";
import { FRAME_HEADER_BYTES } from "../common/limits.ts";

export interface SimNetworkOptions {
  seed: number;
  /** Probability that one message is lost. */
  dropRate?: number;
  /** Probability that one message is delivered twice. */
  duplicateRate?: number;
  /** One-way delay, uniform in [min, max]; different delays reorder messages. */
  delayMinMs?: number;
  delayMaxMs?: number;
}

/** One message on its way from `from` to `to`, due at `atMs`. */
export interface InFlight<Body> {
  atMs: number;
  from: string;
  to: string;
  type: string;
  body: Body;
}

/**
 * The messages in flight on a simulated network, in delivery order: by due time, and in the
 * order they were sent when due at the same time. The fake-clock network of the replication
 * simulation (tests/support/sim_network.ts) queues its messages here too.
 */
export class InFlightQueue<Body> {
  // Invariant: sorted by atMs; among equal atMs, in push order.
  #queue: InFlight<Body>[] = [];

  get length(): number {
    return this.#queue.length;
  }

  push(message: InFlight<Body>): void {
    // Binary search for the first message due later, so equal due times keep their send order.
    let lo = 0;
    let hi = this.#queue.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#queue[mid].atMs <= message.atMs) lo = mid + 1;
      else hi = mid;
    }
    this.#queue.splice(lo, 0, message);
  }

  /** Takes the first message due by `nowMs`, or undefined when none is due. */
  shiftDue(nowMs: number): InFlight<Body> | undefined {
    return this.#queue.length > 0 && this.#queue[0].atMs <= nowMs ? this.#queue.shift() : undefined;
  }

  /** Takes every message due by `nowMs`, in delivery order. */
  takeDue(nowMs: number): InFlight<Body>[] {
    const due: InFlight<Body>[] = [];
    for (let m = this.shiftDue(nowMs); m !== undefined; m = this.shiftDue(nowMs)) due.push(m);
    return due;
  }

  /** Forgets every message `lost` picks (those to or from a crashed node). */
  removeWhere(lost: (message: InFlight<Body>) => boolean): void {
    this.#queue = this.#queue.filter((m) => !lost(m));
  }
}

/** Counts of what the network did, for assertions and bandwidth figures. */
export interface SimNetworkStats {
  sent: number;
  delivered: number;
  dropped: number;
  duplicated: number;
  bytesSent: number;
}

/** The one name of the link between a and b, whichever end asks. */
export function linkKey(a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}

export class SimNetwork {
  readonly random: Random;
  dropRate: number;
  duplicateRate: number;
  delayMinMs: number;
  delayMaxMs: number;
  readonly stats: SimNetworkStats = {
    sent: 0,
    delivered: 0,
    dropped: 0,
    duplicated: 0,
    bytesSent: 0,
  };
  #nowMs = 0;
  #queue = new InFlightQueue<Uint8Array>();
  #transports = new Map<string, SimTransport>();
  #crashed = new Set<string>();
  #links = new Set<string>();
  /** Node id -> partition group; nodes in different groups cannot reach each other. */
  #group = new Map<string, number>();

  constructor(options: SimNetworkOptions) {
    this.random = new Random(options.seed);
    this.dropRate = options.dropRate ?? 0;
    this.duplicateRate = options.duplicateRate ?? 0;
    this.delayMinMs = options.delayMinMs ?? 1;
    this.delayMaxMs = options.delayMaxMs ?? 10;
  }

  get nowMs(): number {
    return this.#nowMs;
  }

  /** The transport of node `id` (created on first call; a restarted node gets a fresh one). */
  transport(id: string): SimTransport {
    let t = this.#transports.get(id);
    if (!t) {
      t = new SimTransport(id, this);
      this.#transports.set(id, t);
    }
    return t;
  }

  /** Whether a and b can reach each other now. */
  reachable(a: string, b: string): boolean {
    if (a === b || this.#crashed.has(a) || this.#crashed.has(b)) return false;
    if (!this.#transports.has(a) || !this.#transports.has(b)) return false;
    return (this.#group.get(a) ?? 0) === (this.#group.get(b) ?? 0);
  }

  connected(a: string, b: string): boolean {
    return this.#links.has(linkKey(a, b));
  }

  /** Opens a link from a to b when they can reach each other; peerUp fires on both. */
  dial(a: string, b: string): boolean {
    if (!this.reachable(a, b)) return false;
    if (this.#links.has(linkKey(a, b))) return true;
    this.#links.add(linkKey(a, b));
    this.#transports.get(a)!.emitUp(b);
    this.#transports.get(b)!.emitUp(a);
    return true;
  }

  /** Stops a node: its links drop and messages to it are lost; its transport is discarded. */
  crash(id: string): void {
    this.#crashed.add(id);
    this.#dropUnreachableLinks();
    this.#transports.delete(id);
  }

  /** Brings a crashed node back with a fresh transport. */
  restart(id: string): SimTransport {
    this.#crashed.delete(id);
    return this.transport(id);
  }

  /** Splits the nodes into groups that cannot reach each other; unlisted nodes join group 0. */
  partition(groups: string[][]): void {
    this.#group.clear();
    groups.forEach((members, index) => members.forEach((id) => this.#group.set(id, index)));
    this.#dropUnreachableLinks();
  }

  heal(): void {
    this.#group.clear();
  }

  send(from: string, to: string, type: string, body: unknown): boolean {
    if (!this.#links.has(linkKey(from, to))) return false;
    const frame = encodeFrame(type, body);
    this.stats.sent++;
    this.stats.bytesSent += frame.length;
    if (this.random.chance(this.dropRate)) {
      this.stats.dropped++;
      return true;
    }
    const payload = frame.subarray(FRAME_HEADER_BYTES);
    const copies = this.random.chance(this.duplicateRate) ? 2 : 1;
    if (copies === 2) this.stats.duplicated++;
    for (let i = 0; i < copies; i++) {
      const delay = this.delayMinMs + this.random.next() * (this.delayMaxMs - this.delayMinMs);
      this.#queue.push({ atMs: this.#nowMs + delay, from, to, type, body: payload });
    }
    return true;
  }

  /** Moves time to `nowMs`, delivering every message due by then, in time order. */
  advanceTo(nowMs: number): void {
    // Messages sent while delivering are delivered too when they fall due by `nowMs`.
    for (let m = this.#queue.shiftDue(nowMs); m !== undefined; m = this.#queue.shiftDue(nowMs)) {
      this.#nowMs = Math.max(this.#nowMs, m.atMs);
      // A link that broke while the message was in flight loses it, as TCP would.
      if (!this.#links.has(linkKey(m.from, m.to))) {
        this.stats.dropped++;
        continue;
      }
      this.stats.delivered++;
      const frame = decodePayload(m.body);
      this.#transports.get(m.to)?.deliver(m.from, frame.type, frame.body);
    }
    this.#nowMs = Math.max(this.#nowMs, nowMs);
  }

  /** Peers `id` has a link to. */
  linkedPeers(id: string): string[] {
    const peers: string[] = [];
    for (const key of this.#links) {
      const [a, b] = key.split("|");
      if (a === id) peers.push(b);
      else if (b === id) peers.push(a);
    }
    return peers;
  }

  #dropUnreachableLinks(): void {
    for (const key of [...this.#links]) {
      const [a, b] = key.split("|");
      if (this.reachable(a, b)) continue;
      this.#links.delete(key);
      this.#transports.get(a)?.emitDown(b);
      this.#transports.get(b)?.emitDown(a);
    }
  }
}

/** One node's view of the {@link SimNetwork}. */
export class SimTransport extends PeerTransportBase {
  readonly nodeId: string;
  readonly #network: SimNetwork;

  constructor(nodeId: string, network: SimNetwork) {
    super();
    this.nodeId = nodeId;
    this.#network = network;
  }

  send(peerId: string, type: string, body: unknown): boolean {
    return this.#network.send(this.nodeId, peerId, type, body);
  }

  connectedPeers(): string[] {
    return this.#network.linkedPeers(this.nodeId);
  }

  /** Opens a link to `peerId` (the simulated counterpart of a TCP dial and handshake). */
  dial(peerId: string): boolean {
    return this.#network.dial(this.nodeId, peerId);
  }

  /** @internal */
  deliver(from: string, type: string, body: unknown): void {
    this.handlerFor(type)?.(from, body);
  }
  /** @internal */
  emitUp(peerId: string): void {
    this.notifyPeerUp(peerId);
  }
  /** @internal */
  emitDown(peerId: string): void {
    this.notifyPeerDown(peerId);
  }
}
