/**
 * A simulated network of {@link PeerTransport}s for seeded simulations: messages are delivered
 * when the simulation advances its fake clock, after a random delay (so they reorder), and
 * may be dropped or duplicated; links can be cut (partitions) and nodes crashed. Every body is
 * structured-cloned on send, as a real transport serializes it. Same seed, same run.
 *
 * @module
 */
import { InFlightQueue } from "../../src/cluster/sim_network.ts";
import type { FakeClock } from "../../src/common/clock.ts";
import type { Random } from "../../src/common/random.ts";
import { InProcessNetwork, InProcessTransport } from "./_in_process_network.ts";
import { withJoinedBytes } from "../../src/cluster/frame.ts";

export interface SimFaults {
  dropRate: number;
  duplicateRate: number;
  delayMsMin: number;
  delayMsMax: number;
}

/** A node's end of a {@link SimNetwork}: online from the start, offline once crashed. */
export type SimTransport = InProcessTransport;

export class SimNetwork extends InProcessNetwork<SimTransport> {
  readonly clock: FakeClock;
  readonly random: Random;
  faults: SimFaults;
  #queue = new InFlightQueue<unknown>();
  delivered = 0;
  dropped = 0;

  constructor(clock: FakeClock, random: Random, faults: SimFaults) {
    super();
    this.clock = clock;
    this.random = random;
    this.faults = faults;
  }

  protected createTransport(nodeId: string): SimTransport {
    return new InProcessTransport(nodeId, this, { online: true });
  }

  /** Connects every live pair and announces it on both sides. */
  connectAll(): void {
    const ids = [...this.transports.keys()];
    for (const a of ids) for (const b of ids) if (a < b) this.heal(a, b);
  }

  cut(a: string, b: string): void {
    const wasUp = this.connected(a, b);
    this.setCut(a, b, true);
    if (wasUp) {
      this.transports.get(a)!.fireDown(b);
      this.transports.get(b)!.fireDown(a);
    }
  }

  heal(a: string, b: string): void {
    const wasUp = this.connected(a, b) && this.transports.get(a)!.knows(b);
    this.setCut(a, b, false);
    if (!wasUp && this.connected(a, b)) {
      this.transports.get(a)!.fireUp(b);
      this.transports.get(b)!.fireUp(a);
    }
  }

  /** Isolates `id` from every other node. */
  isolate(id: string): void {
    for (const other of this.transports.keys()) if (other !== id) this.cut(id, other);
  }

  /** The node dies: links go down, queued messages to it vanish. */
  crash(id: string): void {
    const t = this.transports.get(id)!;
    for (const other of this.transports.keys()) {
      if (other !== id && this.connected(id, other)) this.transports.get(other)!.fireDown(id);
    }
    t.online = false;
    this.#queue.removeWhere((m) => m.to === id || m.from === id);
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
        from,
        to,
        type,
        body: structuredClone(withJoinedBytes(body)),
      });
    }
    return true;
  }

  /** Delivers every message due by now, in time order. Returns how many. */
  deliverDue(): number {
    // Replies sent while delivering wait for the next call, even when due already.
    const due = this.#queue.takeDue(this.clock.monoMs());
    for (const m of due) {
      if (!this.connected(m.from, m.to)) continue;
      this.delivered++;
      this.transports.get(m.to)!.deliver(m.from, m.type, m.body);
    }
    return due.length;
  }

  get pending(): number {
    return this.#queue.length;
  }
}
