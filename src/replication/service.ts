/**
 * Replication as the node runs it: a {@link Shipper} over the node's store and transport,
 * driven by a timer, plus the request-side waits the HTTP routes need (write acks, causal
 * reads, quorum reads) and the periodic tombstone collection. The node builds one with or
 * without a cluster transport (without one it is a one-member cluster).
 *
 * @module
 */
import { yieldToEventLoop } from "../common/event_loop.ts";
import type { PeerTransport } from "../cluster/transport.ts";
import { type Clock, systemClock } from "../common/clock.ts";
import { covers, type Entry, type VersionVector } from "../common/entry.ts";
import { InputError, OverloadedError, ShanghaiError } from "../common/errors.ts";
import {
  ACK_TIMEOUT_MS_DEFAULT,
  TOMBSTONE_SWEEP_MS_DEFAULT,
  WAITERS_MAX,
} from "../common/limits.ts";
import type { Store } from "../storage/kv/store.ts";
import type { EventBus } from "../telemetry/events.ts";
import { type Logger, silentLogger } from "../telemetry/log.ts";
import { encodeToken } from "./causal_token.ts";
import { stateDigestInSteps } from "./digest.ts";
import type { Succession } from "./frames.ts";
import { NullTransport } from "./null_transport.ts";
import { storeReplicaLog } from "./replica_log.ts";
import { ACK_LEVELS, type AckLevel, type ReplicaView, Shipper, TICK_MS } from "./shipper.ts";

/** Read consistency levels. */
export type Consistency = "local" | "causal" | "quorum";
export const CONSISTENCY_LEVELS: readonly Consistency[] = ["local", "causal", "quorum"];

export interface ReplicationOptions {
  store: Store;
  transport?: PeerTransport;
  /** See ShipperOptions.members. */
  members?: () => readonly string[];
  ackDefault?: AckLevel;
  ackTimeoutMs?: number;
  creditEntries?: number;
  batchEntriesMax?: number;
  batchBytesMax?: number;
  /** See ShipperOptions.tombstoneGraceMs. */
  tombstoneGraceMs?: number;
  /** Tombstones are looked at this often (default TOMBSTONE_SWEEP_MS_DEFAULT). */
  tombstoneSweepMs?: number;
  /** See ShipperOptions.mayShipUnsynced (absent: only durable entries ship). */
  mayShipUnsynced?: () => boolean;
  /** See ShipperOptions.succeeds. */
  succeeds?: Succession;
  clock?: Clock;
  events?: EventBus;
  logger?: Logger;
}

/**
 * One of `choices` from the query parameter `name`, or `fallback` when it is absent or empty.
 * Anything else is an InputError (`bad_query`, a 400) before anything is written or read.
 */
function parseQueryChoice<T extends string>(
  name: string,
  raw: string | undefined,
  options: { choices: readonly T[]; fallback: T },
): T {
  if (raw === undefined || raw === "") return options.fallback;
  if (!(options.choices as readonly string[]).includes(raw)) {
    throw new InputError(
      "bad_query",
      `Invalid query parameter ${name}=${JSON.stringify(raw)}: expected one of ${
        options.choices.join(", ")
      }`,
    );
  }
  return raw as T;
}

/** Parses `?ack=`; unknown levels are a 400 before anything is written. */
export function parseAckLevel(raw: string | undefined, fallback: AckLevel): AckLevel {
  return parseQueryChoice("ack", raw, { choices: ACK_LEVELS, fallback });
}

/** Parses `?consistency=`; unknown levels are a 400. */
export function parseConsistency(raw: string | undefined): Consistency {
  return parseQueryChoice("consistency", raw, { choices: CONSISTENCY_LEVELS, fallback: "local" });
}

export class ReplicationService {
  readonly shipper: Shipper;
  readonly store: Store;
  readonly ackDefault: AckLevel;
  readonly ackTimeoutMs: number;
  readonly #clock: Clock;
  readonly #sweepEveryMs: number;
  readonly #logger: Logger;
  #timer: ReturnType<typeof setInterval> | undefined;
  #sweepTimer: ReturnType<typeof setInterval> | undefined;
  // A tombstone sweep in steps is under way: another one waits for the next tick.
  #sweeping = false;
  #causalWaiters = 0;
  #token = { changes: -1, text: "" };

  constructor(options: ReplicationOptions) {
    this.store = options.store;
    this.#clock = options.clock ?? systemClock;
    this.#sweepEveryMs = options.tombstoneSweepMs ?? TOMBSTONE_SWEEP_MS_DEFAULT;
    this.#logger = options.logger ?? silentLogger;
    this.ackDefault = options.ackDefault ?? "one";
    this.ackTimeoutMs = options.ackTimeoutMs ?? ACK_TIMEOUT_MS_DEFAULT;
    this.shipper = new Shipper({
      log: storeReplicaLog(options.store),
      transport: options.transport ?? new NullTransport(options.store.nodeId),
      clock: this.#clock,
      members: options.members,
      creditEntries: options.creditEntries,
      batchEntriesMax: options.batchEntriesMax,
      batchBytesMax: options.batchBytesMax,
      tombstoneGraceMs: options.tombstoneGraceMs,
      mayShipUnsynced: options.mayShipUnsynced,
      succeeds: options.succeeds,
      events: options.events,
      logger: this.#logger,
    });
  }

  start(): void {
    this.shipper.start();
    this.#timer = setInterval(() => this.shipper.tick(), TICK_MS);
    this.#sweepTimer = setInterval(() => void this.sweepTombstones(), this.#sweepEveryMs);
  }

  /**
   * One tombstone sweep (Shipper.collectTombstones, taken in steps by the store), as the sweep
   * timer runs it every tombstoneSweepMs: resolves with how many were removed, 0 when a sweep
   * is already under way. Never rejects: a failure is logged and the next sweep tries again.
   */
  async sweepTombstones(): Promise<number> {
    if (this.#sweeping) return 0;
    this.#sweeping = true;
    try {
      const removed = await this.shipper.collectTombstones();
      if (removed > 0) this.#logger.info("Collected tombstones", { removed });
      return removed;
    } catch (error) {
      this.#logger.warn("Tombstone collection failed; the next sweep tries again", {
        error: String(error),
      });
      return 0;
    } finally {
      this.#sweeping = false;
    }
  }

  stop(): void {
    clearInterval(this.#timer);
    clearInterval(this.#sweepTimer);
    this.shipper.stop();
  }

  /**
   * The causal token for everything this node holds now. Every write answers with one, and
   * the writes of a batch are answered under the same vector, so it is encoded once per
   * change of the vector.
   */
  token(): string {
    const changes = this.store.vectorChanges;
    if (changes !== this.#token.changes) {
      this.#token = { changes, text: encodeToken(this.store.versionVector()) };
    }
    return this.#token.text;
  }

  /** Waits for `level` on this node's write `seq`; AckTimeoutError (504) on timeout. */
  async waitForAck(seq: number, level: AckLevel): Promise<number> {
    if (level === "one") return 1;
    return await this.shipper.waitForAck(seq, level, this.ackTimeoutMs, () => this.token());
  }

  /** Waits, bounded, until this node's version vector covers `vv`. */
  async waitForCausal(vv: VersionVector): Promise<void> {
    if (covers(this.store.versionVector(), vv)) return;
    if (this.#causalWaiters >= WAITERS_MAX) {
      throw new OverloadedError(
        "overloaded",
        "Cannot wait for a causal read: too many wait already; retry later",
      );
    }
    this.#causalWaiters++;
    const done = Promise.withResolvers<boolean>();
    const off = this.store.onApply(() => {
      if (covers(this.store.versionVector(), vv)) done.resolve(true);
    });
    const timer = setTimeout(() => done.resolve(false), this.ackTimeoutMs);
    try {
      if (!(await done.promise)) {
        throw new ShanghaiError(
          "timeout",
          `Cannot read with consistency=causal: this node holds ${
            encodeToken(this.store.versionVector()) || "nothing"
          }, the token needs ${encodeToken(vv)}`,
        );
      }
    } finally {
      off();
      clearTimeout(timer);
      this.#causalWaiters--;
    }
  }

  /** Reads `key` from a majority, returns the newest version and repairs stale replicas. */
  readQuorum(key: string): Promise<Entry | null> {
    return this.shipper.readQuorum(key, this.ackTimeoutMs);
  }

  replicas(): ReplicaView[] {
    return this.shipper.replicas();
  }

  get nowMs(): number {
    return this.#clock.nowMs();
  }
}

/** The key-value view's digest (see stateDigest), with the vector and LSN it stands for. */
export interface ViewDigest {
  digest: string;
  versionVector: VersionVector;
  keys: number;
  /** The node's last LSN at the moment hashed. */
  lastLsn: number;
}

/**
 * `store`'s view digest as of the call, hashed over the next turns of the event loop while
 * writes go on (stateDigestInSteps): in one go, 300,000 keys of 1 KiB held the loop ~1 s.
 */
export async function viewDigest(store: Store): Promise<ViewDigest> {
  await store.sortKeysInSteps();
  // Read in the same synchronous step as the sorted read begins: all of one moment.
  const versionVector = store.versionVector();
  const keys = store.keyspace.size;
  const lastLsn = store.lastLsn;
  const digest = await stateDigestInSteps(store.keyspace.beginSortedRead(), yieldToEventLoop);
  return { digest, versionVector, keys, lastLsn };
}
