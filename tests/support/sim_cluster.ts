/**
 * A whole cluster of {@link Membership} state machines on a {@link SimNetwork} with a fake
 * clock, for seeded simulations. Node addresses are their ids; every node re-dials the members
 * it knows but has no link to on each tick, as the real driver does (without backoff here).
 *
 * @module
 */
import { Random } from "../../src/common/random.ts";
import type { DetectorKind } from "../../src/cluster/failure_detector.ts";
import { type MemberEvent, Membership, type MemberState } from "../../src/cluster/membership.ts";
import {
  SimNetwork,
  type SimNetworkOptions,
  type SimTransport,
} from "../../src/cluster/sim_network.ts";
import { bindMembership, flushOutbox } from "../../src/cluster/wiring.ts";

export interface SimTimings {
  heartbeatIntervalMs: number;
  suspectAfterMs: number;
  downAfterMs: number;
}

export const DEFAULT_TIMINGS: SimTimings = {
  heartbeatIntervalMs: 5000,
  suspectAfterMs: 10_000,
  downAfterMs: 15_000,
};

export interface SimNode {
  id: string;
  membership: Membership;
  transport: SimTransport;
  alive: boolean;
  /** Set while a graceful leave is in progress or done. */
  leaving: boolean;
}

export interface LoggedEvent extends MemberEvent {
  atMs: number;
  observer: string;
}

export class SimCluster {
  readonly network: SimNetwork;
  readonly timings: SimTimings;
  readonly detector: DetectorKind;
  readonly tickMs: number;
  readonly nodes = new Map<string, SimNode>();
  readonly events: LoggedEvent[] = [];
  readonly #random: Random;
  #incarnations = new Map<string, number>();

  constructor(options: SimNetworkOptions & { timings?: SimTimings; detector?: DetectorKind }) {
    this.network = new SimNetwork(options);
    this.timings = options.timings ?? DEFAULT_TIMINGS;
    this.detector = options.detector ?? "swim";
    this.tickMs = Math.max(1, Math.floor(this.timings.heartbeatIntervalMs / 10));
    this.#random = new Random(options.seed ^ 0x5bd1e995);
  }

  get nowMs(): number {
    return this.network.nowMs;
  }

  /** Starts node `id` (again, after a crash: with a higher incarnation) and dials `seeds`. */
  start(id: string, seeds: readonly string[] = []): SimNode {
    const previous = this.nodes.get(id);
    const incarnation = (this.#incarnations.get(id) ?? 0) + 1;
    this.#incarnations.set(id, incarnation);
    const transport = previous ? this.network.restart(id) : this.network.transport(id);
    const known = previous
      ? previous.membership.members().filter((m) => !m.self).map((m) => ({
        id: m.id,
        address: m.address,
        httpAddress: m.httpAddress,
      }))
      : [];
    const membership = new Membership({
      self: { id, address: id, httpAddress: `http-${id}`, incarnation },
      ...this.timings,
      detector: this.detector,
      random: new Random(this.#random.int(2 ** 31)),
      nowMs: this.nowMs,
      known,
    });
    const node: SimNode = { id, membership, transport, alive: true, leaving: false };
    this.nodes.set(id, node);
    bindMembership(
      () => node.membership,
      transport,
      () => this.nowMs,
      (outbox) => this.#log(id, outbox.events),
    );
    for (const seed of seeds) transport.dial(seed);
    return node;
  }

  crash(id: string): void {
    const node = this.nodes.get(id)!;
    node.alive = false;
    this.network.crash(id);
  }

  /** Starts a graceful leave; the node stops once every member acked or two periods passed. */
  leave(id: string): void {
    const node = this.nodes.get(id)!;
    node.leaving = true;
    node.membership.leave(this.nowMs);
    this.#log(id, flushOutbox(node.membership, node.transport).events);
    const deadline = this.nowMs + 2 * this.timings.heartbeatIntervalMs;
    const stopWhenDone = () => {
      if (!node.alive) return;
      if (node.membership.leaveAcknowledged() || this.nowMs >= deadline) this.crash(id);
    };
    this.#afterTick.push(stopWhenDone);
  }

  #afterTick: (() => void)[] = [];

  /** Runs the cluster for `ms` of simulated time. */
  run(ms: number, check?: () => void): void {
    const end = this.nowMs + ms;
    while (this.nowMs < end) {
      const t = Math.min(end, this.nowMs + this.tickMs);
      this.network.advanceTo(t);
      for (const node of this.nodes.values()) {
        if (!node.alive) continue;
        if (!node.leaving) {
          for (const m of node.membership.members()) {
            if (m.self || m.state === "left" || node.transport.connectedPeers().includes(m.id)) {
              continue;
            }
            node.transport.dial(m.address);
          }
        }
        node.membership.tick(t);
        this.#log(node.id, flushOutbox(node.membership, node.transport).events);
      }
      for (const f of this.#afterTick) f();
      check?.();
    }
  }

  /** Runs until `done()` or `ms` passes; returns whether `done()` held. */
  runUntil(done: () => boolean, ms: number): boolean {
    const end = this.nowMs + ms;
    while (this.nowMs < end) {
      if (done()) return true;
      this.run(this.tickMs);
    }
    return done();
  }

  /** What `observer` thinks of `target` (undefined if it does not know it). */
  view(observer: string, target: string): MemberState | undefined {
    return this.nodes.get(observer)!.membership.member(target)?.state;
  }

  liveIds(): string[] {
    return [...this.nodes.values()].filter((n) => n.alive && !n.leaving).map((n) => n.id);
  }

  /** Every live node sees every other live node up. */
  allUp(): boolean {
    const live = this.liveIds();
    return live.every((a) => live.every((b) => a === b || this.view(a, b) === "up"));
  }

  #log(observer: string, events: MemberEvent[]): void {
    for (const e of events) this.events.push({ ...e, atMs: this.nowMs, observer });
  }
}

/**
 * Runs `body` once per seed (or only for SEED from the environment); a failure names its seed
 * and the command that replays it.
 */
export function forEachSeed(count: number, body: (seed: number) => void, base = 1): void {
  const only = Deno.env.get("SEED");
  const seeds = only !== undefined
    ? [Number(only)]
    : Array.from({ length: count }, (_, i) => base + i);
  for (const seed of seeds) {
    try {
      body(seed);
    } catch (error) {
      throw new Error(
        `Failed at seed ${seed}; replay with SEED=${seed} deno task test:sim: ${
          (error as Error).message
        }`,
        { cause: error },
      );
    }
  }
}
