/**
 * A seeded replication simulation: N nodes, each a {@link MemoryReplicaLog} and a real
 * {@link Shipper}, over a {@link SimNetwork} with a fake clock. `step()` moves time a little,
 * delivers due messages, ticks the shippers and lets promise continuations run. A failure
 * prints its seed; `SEED=n deno task test:sim` replays one seed.
 *
 * @module
 */
import assert from "node:assert/strict";
import { FakeClock } from "../../src/common/clock.ts";
import { Random } from "../../src/common/random.ts";
import { stateDigest } from "../../src/replication/digest.ts";
import type { Succession } from "../../src/replication/frames.ts";
import { Shipper, TICK_MS } from "../../src/replication/shipper.ts";
import { MemoryReplicaLog } from "./memory_replica_log.ts";
import { type SimFaults, SimNetwork, type SimTransport } from "./sim_network.ts";

export interface SimNode {
  id: string;
  log: MemoryReplicaLog;
  transport: SimTransport;
  shipper: Shipper;
  alive: boolean;
}

export interface SimClusterOptions {
  seed: number;
  nodes: number;
  faults?: Partial<SimFaults>;
  creditEntries?: number;
  batchEntriesMax?: number;
  resendAfterMs?: number;
  /** Shipper tail cache size (0: every read goes to the log, where tests can count it). */
  tailCacheBytes?: number;
  /** See ShipperOptions.tombstoneGraceMs. */
  tombstoneGraceMs?: number;
  /**
   * Shippers send entries as soon as they are written, before they are durable
   * (ShipperOptions.mayShipUnsynced), and local writes become durable only at the next step.
   */
  shipUnsynced?: boolean;
}

/** Lets every queued promise continuation run (the sim's only source of async is microtasks). */
export async function settle(): Promise<void> {
  // Microtasks only: a macrotask yield costs a millisecond of real time per step.
  for (let i = 0; i < 64; i++) await Promise.resolve();
}

export class SimCluster {
  readonly clock = new FakeClock();
  readonly random: Random;
  readonly network: SimNetwork;
  readonly nodes: SimNode[] = [];
  readonly #options: SimClusterOptions;
  readonly #ids: string[];
  /** Every node's member list: a new array on each change, as the membership hands back. */
  #members: readonly string[];
  #sinceTickMs = 0;
  /** Nodes whose disk is slow: what they append becomes durable only once released. */
  readonly slowDisk = new Set<string>();

  constructor(options: SimClusterOptions) {
    this.random = new Random(options.seed);
    this.network = new SimNetwork(this.clock, new Random(options.seed * 7919 + 1), {
      dropRate: 0.02,
      duplicateRate: 0.02,
      delayMsMin: 1,
      delayMsMax: 15,
      ...options.faults,
    });
    this.#options = options;
    this.#ids = Array.from({ length: options.nodes }, (_, i) => `n${i + 1}`);
    this.#members = this.#ids;
    for (const id of this.#ids) {
      const log = new MemoryReplicaLog(id, this.clock);
      log.localDurableAtStep = options.shipUnsynced ?? false;
      this.nodes.push(this.#node(id, log));
    }
    for (const node of this.nodes) node.shipper.start();
    this.network.connectAll();
  }

  #node(id: string, log: MemoryReplicaLog, succeeds?: Succession): SimNode {
    const ids = this.#ids;
    const transport = this.network.add(id);
    const shipper = new Shipper({
      log,
      transport,
      clock: this.clock,
      members: () => this.#members,
      // A restarted node numbers its sessions on from a later wall clock, as a real one does.
      sessionBase: 1000 * (ids.indexOf(id) + 1) + this.clock.monoMs() * 1000,
      creditEntries: this.#options.creditEntries ?? 20,
      batchEntriesMax: this.#options.batchEntriesMax ?? 7,
      resendAfterMs: this.#options.resendAfterMs ?? 200,
      tailCacheBytes: this.#options.tailCacheBytes,
      tombstoneGraceMs: this.#options.tombstoneGraceMs,
      mayShipUnsynced: this.#options.shipUnsynced ? () => true : undefined,
      succeeds,
    });
    return { id, log, transport, shipper, alive: true };
  }

  /**
   * Node `id` loses its data and is restored in place from a backup taken at `uptoLsn`: it
   * comes back with its log up to there, under a new origin, and rejoins.
   */
  restore(id: string, uptoLsn: number, origin: string): SimNode {
    this.crash(id);
    const at = this.nodes.findIndex((n) => n.id === id);
    const node = this.#node(id, this.nodes[at].log.restoredCopy(uptoLsn, origin));
    this.nodes[at] = node;
    node.shipper.start();
    this.network.connectAll();
    return node;
  }

  /**
   * Node `id` crashes and restarts on its own log: what was durable survives (the entries
   * shipped before their sync and not yet durable are lost here, though peers may hold them),
   * and it writes on under `origin`, as a node that shipped unsynced entries does after a
   * crash (src/node/unsynced.ts).
   */
  crashAndRestart(id: string, origin: string, keptLsn?: number): SimNode {
    // The same log up to what it kept, as a node tells its peers after such a restart.
    return this.#restart(id, keptLsn, origin, true);
  }

  /**
   * Node `id`'s data directory is rolled back to `keptLsn` (a volume snapshot put back, or a
   * disk that lost writes it had made durable, the marker of src/node/unsynced.ts included) and
   * the node starts on it as it is: under the same origin, numbering its writes on from the
   * last of its own entries it still holds, which its peers may hold more of.
   */
  rollBack(id: string, keptLsn: number): SimNode {
    return this.#restart(id, keptLsn, this.node(id).log.origin, false);
  }

  /**
   * Crashes `id` and starts it on its log up to `keptLsn` (what was durable, at most) under
   * `origin`; `succeeds`: it tells its peers its log is the old origin's up to there.
   */
  #restart(id: string, keptLsn: number | undefined, origin: string, succeeds: boolean): SimNode {
    this.crash(id);
    const at = this.nodes.findIndex((n) => n.id === id);
    const old = this.nodes[at].log;
    // `keptLsn` below what was durable: a disk that lost what it had made durable (a write
    // cache that lied about its flushes), a fault no node can rule out.
    const kept = Math.min(keptLsn ?? old.durableLsn, old.durableLsn);
    const log = old.restoredCopy(kept, origin);
    log.localDurableAtStep = old.localDurableAtStep;
    const node = this.#node(
      id,
      log,
      succeeds ? { origin: old.origin, throughLsn: kept } : undefined,
    );
    this.nodes[at] = node;
    node.shipper.start();
    this.network.connectAll();
    return node;
  }

  node(id: string): SimNode {
    return this.nodes.find((n) => n.id === id)!;
  }

  async step(ms = 1 + this.random.int(4)): Promise<void> {
    this.clock.advance(ms);
    this.network.deliverDue();
    // Peers' entries made durable during the last step are applied only now, after this
    // step's frames were handled: as in a real node, the log holds them (lastLsn) for a
    // moment before the view and version vector do.
    for (const node of this.nodes) {
      if (node.alive && !this.slowDisk.has(node.id)) node.log.applyDurable();
    }
    this.#sinceTickMs += ms;
    if (this.#sinceTickMs >= TICK_MS) {
      this.#sinceTickMs = 0;
      for (const node of this.nodes) if (node.alive) node.shipper.tick();
    }
    await settle();
  }

  /** Steps until `done()` holds; after `stepsMax` steps, fails with `what` and the report. */
  async stepUntil(done: () => boolean, what: string, stepsMax = 20_000): Promise<void> {
    for (let steps = 0; !done(); steps++) {
      if (steps >= stepsMax) assert.fail(`${what}\n${this.report()}`);
      await this.step();
    }
  }

  /** `id` is no longer a member of anyone's cluster (`shanghai node leave id` once it is down). */
  removeMember(id: string): void {
    this.#members = this.#members.filter((m) => m !== id);
  }

  crash(id: string): void {
    const node = this.node(id);
    node.alive = false;
    node.shipper.stop();
    this.network.crash(id);
  }

  /** Runs until every live node holds the same version vector, or throws after maxMs. */
  async untilConverged(maxMs: number, describe: () => string): Promise<number> {
    const start = this.clock.monoMs();
    while (this.clock.monoMs() - start < maxMs) {
      await this.step(5);
      if (this.converged()) return this.clock.monoMs() - start;
    }
    throw new Error(`Not converged after ${maxMs} simulated ms: ${describe()}\n${this.report()}`);
  }

  converged(ids?: string[]): boolean {
    const live = this.nodes.filter((n) => n.alive && (ids === undefined || ids.includes(n.id)));
    const first = JSON.stringify(sortVv(live[0].log.versionVector()));
    return live.every((n) => JSON.stringify(sortVv(n.log.versionVector())) === first);
  }

  digests(): Map<string, string> {
    return new Map(
      this.nodes.filter((n) => n.alive).map((n) => [n.id, stateDigest(n.log.keyspace.entries())]),
    );
  }

  report(): string {
    return this.nodes.map((n) =>
      `${n.id}${n.alive ? "" : " (dead)"} vv=${
        JSON.stringify(sortVv(n.log.versionVector()))
      } last=${n.log.lastLsn()} ` +
      `replicas=${
        JSON.stringify(
          n.alive ? n.shipper.replicas().map((r) => [r.peer, r.status, r.followerOffset]) : [],
        )
      }`
    ).join("\n");
  }
}

function sortVv(vv: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(vv).sort(([a], [b]) => (a < b ? -1 : 1)));
}
