/**
 * A simulated network of {@link PeerTransport}s for seeded simulations: messages are delivered
 * when the simulation advances its fake clock, after a random delay (so they reorder), and
 * may be dropped or duplicated; links can be cut (partitions) and nodes crashed. Every body is
 * structured-cloned on send, as a real transport serializes it. Same seed, same run.
 *
 * @module
 */
import { PeerTransportBase } from "../../src/cluster/transport.ts";
import type { FakeClock } from "../../src/common/clock.ts";
import type { Random } from "../../src/common/random.ts";

export interface SimFaults {
  dropRate: number;
  duplicateRate: number;
  delayMsMin: number;
  delayMsMax: number;
}

interface InFlight {
  atMs: number;
  order: number;
  from: string;
  to: string;
  type: string;
  body: unknown;
}

export class SimNetwork {
  readonly clock: FakeClock;
  readonly random: Random;
  faults: SimFaults;
  #transports = new Map<string, SimTransport>();
  #cut = new Set<string>();
  #queue: InFlight[] = [];
  #order = 0;
  delivered = 0;
  dropped = 0;

  constructor(clock: FakeClock, random: Random, faults: SimFaults) {
    this.clock = clock;
    this.random = random;
    this.faults = faults;
  }

  add(nodeId: string): SimTransport {
    const transport = new SimTransport(nodeId, this);
    this.#transports.set(nodeId, transport);
    return transport;
  }

  static #link(a: string, b: string): string {
    return a < b ? `${a}|${b}` : `${b}|${a}`;
  }

  connected(a: string, b: string): boolean {
    const ta = this.#transports.get(a);
    const tb = this.#transports.get(b);
    return a !== b && ta !== undefined && tb !== undefined && ta.alive && tb.alive &&
      !this.#cut.has(SimNetwork.#link(a, b));
  }

  /** Connects every live pair and announces it on both sides. */
  connectAll(): void {
    const ids = [...this.#transports.keys()];
    for (const a of ids) for (const b of ids) if (a < b) this.heal(a, b);
  }

  cut(a: string, b: string): void {
    const wasUp = this.connected(a, b);
    this.#cut.add(SimNetwork.#link(a, b));
    if (wasUp) {
      this.#transports.get(a)!.fireDown(b);
      this.#transports.get(b)!.fireDown(a);
    }
  }

  heal(a: string, b: string): void {
    const key = SimNetwork.#link(a, b);
    const wasUp = this.connected(a, b) && !this.#cut.has(key) && this.#transports.get(a)!.knows(b);
    this.#cut.delete(key);
    if (!wasUp && this.connected(a, b)) {
      this.#transports.get(a)!.fireUp(b);
      this.#transports.get(b)!.fireUp(a);
    }
  }

  /** Isolates `id` from every other node. */
  isolate(id: string): void {
    for (const other of this.#transports.keys()) if (other !== id) this.cut(id, other);
  }

  /** The node dies: links go down, queued messages to it vanish. */
  crash(id: string): void {
    const t = this.#transports.get(id)!;
    for (const other of this.#transports.keys()) {
      if (other !== id && this.connected(id, other)) this.#transports.get(other)!.fireDown(id);
    }
    t.alive = false;
    this.#queue = this.#queue.filter((m) => m.to !== id && m.from !== id);
  }

  send(from: string, to: string, type: string, body: unknown): boolean {
    if (!this.connected(from, to)) return false;
    if (this.random.chance(this.faults.dropRate)) {
      this.dropped++;
      return true;
    }
    const copies = this.random.chance(this.faults.duplicateRate) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const delay = this.faults.delayMsMin +
        this.random.int(this.faults.delayMsMax - this.faults.delayMsMin + 1);
      this.#queue.push({
        atMs: this.clock.monoMs() + delay,
        order: this.#order++,
        from,
        to,
        type,
        body: structuredClone(body),
      });
    }
    return true;
  }

  /** Delivers every message due by now, in time order. Returns how many. */
  deliverDue(): number {
    const now = this.clock.monoMs();
    const due = this.#queue.filter((m) => m.atMs <= now).sort((a, b) =>
      a.atMs - b.atMs || a.order - b.order
    );
    if (due.length === 0) return 0;
    this.#queue = this.#queue.filter((m) => m.atMs > now);
    for (const m of due) {
      if (!this.connected(m.from, m.to)) continue;
      this.delivered++;
      this.#transports.get(m.to)!.deliver(m.from, m.type, m.body);
    }
    return due.length;
  }

  get pending(): number {
    return this.#queue.length;
  }
}

export class SimTransport extends PeerTransportBase {
  readonly nodeId: string;
  readonly #network: SimNetwork;
  alive = true;
  #connected = new Set<string>();

  constructor(nodeId: string, network: SimNetwork) {
    super();
    this.nodeId = nodeId;
    this.#network = network;
  }

  send(peerId: string, type: string, body: unknown): boolean {
    if (!this.alive) return false;
    return this.#network.send(this.nodeId, peerId, type, body);
  }

  connectedPeers(): string[] {
    return [...this.#connected];
  }

  knows(peer: string): boolean {
    return this.#connected.has(peer);
  }

  fireUp(peer: string): void {
    if (!this.alive || this.#connected.has(peer)) return;
    this.#connected.add(peer);
    this.notifyPeerUp(peer);
  }

  fireDown(peer: string): void {
    if (!this.#connected.delete(peer)) return;
    this.notifyPeerDown(peer);
  }

  deliver(from: string, type: string, body: unknown): void {
    if (!this.alive) return;
    this.handlerFor(type)?.(from, body);
  }
}
