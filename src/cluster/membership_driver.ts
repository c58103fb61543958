/**
 * The membership shell: the only cluster code with a timer. It ticks the pure
 * {@link Membership} on an interval, feeds it the transport's messages, drains its outbox into
 * the transport, the event bus and the log, dials members it has no connection to (with
 * backoff), and remembers the members it knows in the data directory.
 *
 * @module
 */
import type { Clock } from "../common/clock.ts";
import { Random } from "../common/random.ts";
import type { EventBus } from "../telemetry/events.ts";
import type { Logger } from "../telemetry/log.ts";
import type { KnownMember } from "./cluster_state.ts";
import type { DetectorKind } from "./failure_detector.ts";
import {
  type Member,
  type MemberEvent,
  Membership,
  type MemberState,
  type Outbox,
} from "./membership.ts";
import type { Seed } from "./seeds.ts";
import type { DialResult } from "./tcp_transport.ts";
import type { PeerTransport } from "./transport.ts";
import { bindMembership, flushOutbox } from "./wiring.ts";

/** A transport the driver can dial through (the TCP transport). */
export interface DialingTransport extends PeerTransport {
  dial(address: string): Promise<DialResult>;
}

/** One member as the HTTP API and `shanghai status` show it. */
export interface MemberInfo {
  id: string;
  /** Node port, host:port. */
  address: string;
  /** HTTP API, host:port. */
  httpAddress: string;
  state: MemberState;
  incarnation: number;
  /** Wall-clock ms since the epoch when this node last heard from it; null if never. */
  lastSeenMs: number | null;
  /** How long ago that was, in ms; null if never. */
  lastSeenAgoMs: number | null;
  self: boolean;
}

/** Seed 002's cluster states. */
export type ClusterHealth = "Healthy" | "Degraded" | "Unavailable";

/**
 * Healthy: every member that has not left is up. Degraded: some are suspect or down but a
 * majority is up (quorum writes still succeed). Unavailable: no majority is up.
 */
export function clusterHealth(members: readonly { state: MemberState }[]): ClusterHealth {
  const counted = members.filter((m) => m.state !== "left");
  const up = counted.filter((m) => m.state === "up").length;
  if (up === counted.length) return "Healthy";
  return up > counted.length / 2 ? "Degraded" : "Unavailable";
}

export interface MembershipDriverOptions {
  transport: DialingTransport;
  self: KnownMember;
  incarnation: number;
  known: readonly KnownMember[];
  seeds: readonly Seed[];
  heartbeatIntervalMs: number;
  suspectAfterMs: number;
  downAfterMs: number;
  detector: DetectorKind;
  clock: Clock;
  events: EventBus;
  logger: Logger;
  /** Saves the members worth remembering; called after the set changes (one write at a time). */
  persist: (members: KnownMember[], incarnation: number) => Promise<void>;
  /**
   * Remembers no member (default false): started with seeds, it knows its cluster's members,
   * and so its quorum, only once a member's full list has arrived (see joined()).
   */
  joining?: boolean;
  seed?: number;
}

/** How long a join waits for the seed's member list after the seed answered. */
export const JOIN_SYNC_TIMEOUT_MS = 5_000;
/** How often a join looks for that list (it comes one round trip after the handshake). */
const JOIN_SYNC_POLL_MS = 2;

const LOG_MESSAGES: Record<MemberEvent["kind"], string> = {
  joined: "Member joined",
  up: "Member up",
  suspect: "Member suspect",
  down: "Member down",
  left: "Member left",
};

export class MembershipDriver {
  readonly #options: MembershipDriverOptions;
  readonly #transport: DialingTransport;
  readonly #membership: Membership;
  readonly #tickMs: number;
  #timer: ReturnType<typeof setInterval> | undefined;
  #unbind: () => void = () => {};
  /** Dials under way, by address: a second caller waits for the same one (see #dial). */
  #dialing = new Map<string, Promise<DialResult>>();
  /** Started joining (see MembershipDriverOptions.joining) and no member's list came yet. */
  #mustJoin: boolean;
  #backoff = new Map<string, { fails: number; nextMs: number }>();
  #seedsPending: Seed[];
  #persisted = "";
  #persisting = false;
  #stopped = false;
  #lastHousekeepingMs = -Infinity;

  constructor(options: MembershipDriverOptions) {
    this.#options = options;
    this.#transport = options.transport;
    this.#seedsPending = options.seeds.filter((s) =>
      s.address !== options.self.address && s.id !== options.self.id
    );
    // Ten ticks per heartbeat: detection lags its bound by at most a tenth of an interval.
    this.#tickMs = Math.max(5, Math.floor(options.heartbeatIntervalMs / 10));
    this.#membership = new Membership({
      self: { ...options.self, incarnation: options.incarnation },
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      suspectAfterMs: options.suspectAfterMs,
      downAfterMs: options.downAfterMs,
      detector: options.detector,
      random: new Random(options.seed ?? crypto.getRandomValues(new Uint32Array(1))[0]),
      nowMs: options.clock.monoMs(),
      known: options.known,
    });
    this.#persisted = this.#signature(this.#knownMembers());
    this.#mustJoin = (options.joining ?? false) && this.#seedsPending.length > 0;
  }

  /**
   * Whether this node knows its cluster's members: always, unless it started
   * {@link MembershipDriverOptions.joining}; then once a member's full list has arrived.
   * Until then it would count a quorum among itself alone.
   */
  joined(): boolean {
    if (!this.#mustJoin) return true;
    if (!this.#membership.hasSyncedWithAny()) return false;
    this.#mustJoin = false;
    return true;
  }

  /** Starts ticking and dials the seeds and remembered members (without waiting). */
  start(): void {
    const unbind = bindMembership(
      () => this.#membership,
      this.#transport,
      () => this.#options.clock.monoMs(),
      (outbox) => this.#publish(outbox),
      (from, type) =>
        this.#options.logger.warn("Dropped malformed membership message", { peer: from, type }),
    );
    // A lost link is redialed at the next tick, not at the next housekeeping (half a heartbeat
    // away): a peer that was stopped past the link timeout, or restarted, is back sooner.
    const offDown = this.#transport.onPeerDown(() => {
      this.#lastHousekeepingMs = -Infinity;
    });
    this.#unbind = () => {
      unbind();
      offDown();
    };
    this.#timer = setInterval(() => this.#tick(), this.#tickMs);
    this.#tick();
  }

  /**
   * Dials every seed once and waits for the answers, so `serve` can fail at start when a seed
   * refuses this node (another cluster, a taken id, another protocol version).
   */
  async joinSeeds(): Promise<{ seed: Seed; result: DialResult }[]> {
    const seeds = [...this.#seedsPending];
    const results = await Promise.all(
      seeds.map(async (seed) => ({ seed, result: await this.#dialAndSync(seed.address) })),
    );
    return results;
  }

  /** Joins the cluster that the member at `address` (its node port) belongs to. */
  async join(address: string): Promise<DialResult> {
    return await this.#dialAndSync(address);
  }

  /**
   * Dials `address` and, once it answers, waits (at most {@link JOIN_SYNC_TIMEOUT_MS}) for
   * its full member list. A node joining for the first time knows only itself until then:
   * it would count a quorum of one, and answer quorum writes and reads from its own copy.
   */
  async #dialAndSync(address: string): Promise<DialResult> {
    const result = await this.#dial(address);
    if (!result.ok) return result;
    const deadline = this.#options.clock.monoMs() + JOIN_SYNC_TIMEOUT_MS;
    while (!this.#membership.hasSyncedWith(result.peerId)) {
      if (this.#stopped || this.#options.clock.monoMs() >= deadline) {
        this.#options.logger.warn(
          "A seed answered but has not sent its member list: quorum counts the members known so far until it does",
          { seed: address, peer: result.peerId, waitedMs: JOIN_SYNC_TIMEOUT_MS },
        );
        break;
      }
      await new Promise((r) => setTimeout(r, JOIN_SYNC_POLL_MS));
    }
    return result;
  }

  /** Every member, self included, sorted by id. */
  members(): MemberInfo[] {
    const mono = this.#options.clock.monoMs();
    const wall = this.#options.clock.nowMs();
    return this.#membership.members().map((m) => {
      const ago = m.self
        ? 0
        : m.lastHeardMs === undefined
        ? null
        : Math.max(0, Math.round(mono - m.lastHeardMs));
      return {
        id: m.id,
        address: m.address,
        httpAddress: m.httpAddress,
        state: m.state,
        incarnation: m.incarnation,
        lastSeenMs: ago === null ? null : Math.round(wall - ago),
        lastSeenAgoMs: ago,
        self: m.self,
      };
    });
  }

  /** See {@link Membership.memberIds}. */
  memberIds(): readonly string[] {
    return this.#membership.memberIds();
  }

  member(id: string): Member | undefined {
    return this.#membership.member(id);
  }

  health(): ClusterHealth {
    return clusterHealth(this.#membership.members());
  }

  get incarnation(): number {
    return this.#membership.incarnation;
  }

  get left(): boolean {
    return this.#membership.left;
  }

  /**
   * Leaves gracefully: announces `left` to every member and waits until each acknowledged it
   * or two heartbeat intervals passed. Returns whether every member acknowledged.
   */
  async leave(): Promise<boolean> {
    if (!this.#membership.left) {
      this.#membership.leave(this.#options.clock.monoMs());
      this.#publish(flushOutbox(this.#membership, this.#transport));
    }
    const deadline = this.#options.clock.monoMs() +
      Math.max(2 * this.#options.heartbeatIntervalMs, 200);
    while (
      !this.#membership.leaveAcknowledged() && this.#options.clock.monoMs() < deadline &&
      !this.#stopped
    ) {
      await new Promise((r) => setTimeout(r, this.#tickMs));
    }
    // A node that left does not rejoin by itself after a restart.
    await this.#options.persist([], this.incarnation).catch(() => {});
    this.#persisted = this.#signature([]);
    return this.#membership.leaveAcknowledged();
  }

  /** Marks a down member as left for good (operator's decision). */
  remove(id: string): ReturnType<Membership["remove"]> {
    const result = this.#membership.remove(id, this.#options.clock.monoMs());
    this.#publish(flushOutbox(this.#membership, this.#transport));
    return result;
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#unbind();
  }

  #tick(): void {
    if (this.#stopped) return;
    const now = this.#options.clock.monoMs();
    this.#membership.tick(now);
    this.#publish(flushOutbox(this.#membership, this.#transport));
    if (this.#membership.left) return;
    // Dialing and saving need not run at tick rate: twice per heartbeat is plenty.
    if (now - this.#lastHousekeepingMs < this.#options.heartbeatIntervalMs / 2) return;
    this.#lastHousekeepingMs = now;
    this.#redial(now);
    this.#maybePersist();
  }

  #redial(now: number): void {
    const connected = new Set(this.#transport.connectedPeers());
    for (const m of this.#membership.members()) {
      if (m.self || m.state === "left" || connected.has(m.id)) {
        if (connected.has(m.id)) this.#backoff.delete(m.address);
        continue;
      }
      this.#maybeDial(m.address, now, m.id);
    }
    // Seeds are dialed until one answers, and again whenever this node knows no other member
    // (a seed may have dropped the connection before the full-state exchange).
    const alone = this.#membership.members().every((m) => m.self || m.state === "left");
    const seeds = alone ? this.#options.seeds : this.#seedsPending;
    for (const seed of seeds) {
      if (seed.address !== this.#options.self.address && seed.id !== this.#options.self.id) {
        this.#maybeDial(seed.address, now);
      }
    }
  }

  #maybeDial(address: string, now: number, expectedId?: string): void {
    if (this.#dialing.has(address)) return;
    const backoff = this.#backoff.get(address);
    if (backoff && now < backoff.nextMs) return;
    this.#dial(address, expectedId);
  }

  /**
   * Dials `address`, or waits for the dial already under way to it. Two connections made at
   * once to one seed (the first tick's and the join's) raced: the one that adopted the
   * cluster's id dropped the other, and the join reported a seed that had in fact answered.
   */
  #dial(address: string, expectedId?: string): Promise<DialResult> {
    const under = this.#dialing.get(address);
    if (under !== undefined) return under;
    const dial = this.#dialOnce(address, expectedId);
    this.#dialing.set(address, dial);
    return dial;
  }

  async #dialOnce(address: string, expectedId?: string): Promise<DialResult> {
    try {
      const result = await this.#transport.dial(address);
      const now = this.#options.clock.monoMs();
      // The member's address now belongs to another node (it restarted elsewhere and its
      // port was reused): back off as for a failure, or we would redial it every tick.
      const elsewhere = result.ok && expectedId !== undefined && result.peerId !== expectedId;
      if (elsewhere) {
        this.#options.logger.debug("Member address now answers as another node", {
          address,
          expected: expectedId,
          peer: result.ok ? result.peerId : "",
        });
      }
      if (result.ok && !elsewhere) {
        this.#backoff.delete(address);
        this.#seedsPending = this.#seedsPending.filter((s) => s.address !== address);
      } else {
        const fails = (this.#backoff.get(address)?.fails ?? 0) + 1;
        const interval = this.#options.heartbeatIntervalMs;
        const delayMs = Math.min(interval * 2 ** (fails - 1), 8 * interval);
        this.#backoff.set(address, { fails, nextMs: now + delayMs });
        if (!result.ok && result.refused) {
          this.#options.logger.warn("Member refused our connection", {
            address,
            code: result.code,
            reason: result.reason,
          });
        } else if (!result.ok && fails === 1) {
          this.#options.logger.debug("Cannot reach member", { address, reason: result.reason });
        }
      }
      return result;
    } finally {
      this.#dialing.delete(address);
    }
  }

  #publish(outbox: Outbox): void {
    const { events, logger } = this.#options;
    for (const e of outbox.events) {
      if (e.nodeId === this.#options.self.id && e.kind !== "left") continue;
      events.emit("cluster.member.changed", {
        nodeId: e.nodeId,
        state: e.state,
        ...(e.previous === undefined ? {} : { previous: e.previous }),
        address: e.address,
        kind: e.kind,
        incarnation: e.incarnation,
      });
      const fields = {
        member: e.nodeId,
        state: e.state,
        previous: e.previous,
        address: e.address,
        incarnation: e.incarnation,
      };
      if (e.kind === "suspect" || e.kind === "down") logger.warn(LOG_MESSAGES[e.kind], fields);
      else logger.info(LOG_MESSAGES[e.kind], fields);
    }
    if (events.has("cluster.heartbeat.completed")) {
      for (const h of outbox.heartbeats) events.emit("cluster.heartbeat.completed", h);
    }
  }

  #knownMembers(): KnownMember[] {
    return this.#membership.members()
      .filter((m) => !m.self && m.state !== "left")
      .map((m) => ({ id: m.id, address: m.address, httpAddress: m.httpAddress }));
  }

  #signature(members: KnownMember[]): string {
    return JSON.stringify([this.#membership.incarnation, members]);
  }

  #maybePersist(): void {
    if (this.#persisting) return;
    const members = this.#knownMembers();
    const signature = this.#signature(members);
    if (signature === this.#persisted) return;
    this.#persisting = true;
    this.#options.persist(members, this.#membership.incarnation)
      .then(() => this.#persisted = signature)
      .catch((error) =>
        this.#options.logger.warn("Cannot save known members", { error: String(error) })
      )
      .finally(() => this.#persisting = false);
  }
}
