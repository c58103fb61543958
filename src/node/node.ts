/**
 * The composition root: builds one node from a validated config and wires the shells
 * together. Start order: HTTP first (so /health answers and /ready says 503 during recovery),
 * then identity and store recovery, then the cluster layer, with replication registered the
 * moment the node port listens (peers open their streams while this node joins its seeds),
 * then readiness. Stop order: stop taking requests and answer those in flight (replication still
 * runs, so a quorum write gets its acks), then replication and the cluster layer, then let
 * in-flight batches finish and fsync, snapshot, close.
 *
 * @module
 */
import { type Clock, systemClock } from "../common/clock.ts";
import { createApp, type RouteMount } from "../api/http/app.ts";
import { kvPutRoute } from "../api/http/fast_path.ts";
import { HttpServer } from "../api/http/server.ts";
import type { HttpContext, Readiness } from "../api/http/context.ts";
import { ReplicationService } from "../replication/service.ts";
import type { ConflictResolver } from "../storage/kv/keyspace.ts";
import { Store } from "../storage/kv/store.ts";
import { EventBus } from "../telemetry/events.ts";
import { createLogger, type Logger } from "../telemetry/log.ts";
import type { NodeConfig } from "./config.ts";
import { loadOrCreateIdentity } from "./identity.ts";
import {
  clearShippingUnsynced,
  markShippingUnsynced,
  originAfterUnsyncedShipping,
} from "./unsynced.ts";
import { VERSION } from "./version.ts";
import { clusterRoutes } from "../api/http/cluster_routes.ts";
import { type Identity, identityOrigin, writeIdentity } from "../cluster/identity.ts";
import { newOrigin } from "../common/origin.ts";
import { ORIGIN_CHECK_WAIT_MS } from "../common/limits.ts";
import { NodeCluster } from "../cluster/node_cluster.ts";
import type { MembershipDriver } from "../cluster/membership_driver.ts";
import type { PeerTransport } from "../cluster/transport.ts";
import { NodeOps } from "./ops.ts";
import { IdlePoller } from "./idle_poll.ts";
import { holdPrefaultedSlabs } from "../common/value_slab.ts";

const NO_MEMBERS: readonly string[] = [];
/** How long one step of a stop may take before the node logs that it is still waiting on it. */
const STOP_STEP_WARN_MS = 2_000;

export interface NodeOptions {
  clock?: Clock;
  logger?: Logger;
  events?: EventBus;
  mounts?: RouteMount[];
  /** Node-to-node transport for replication (none: a one-member cluster). */
  transport?: PeerTransport;
  /**
   * Every member's id, down ones included (quorum size); default: the cluster's members.
   * Hand back a new array when the membership changes (see ShipperOptions.members).
   */
  members?: () => readonly string[];
  /** Decides concurrent writes to a key (default last-writer-wins); same on every node. */
  resolver?: ConflictResolver;
  /** Environment for OTEL_* telemetry settings (default: the process environment). */
  env?: Record<string, string | undefined>;
}

/** Logged (at error) as a node whose data directory was rolled back stops (see #originBehind). */
export const ORIGIN_BEHIND_STOP_MESSAGE =
  "Stopping to start again under a new origin: this node's data directory holds fewer of its own writes than its peers (rolled back, or a disk that lost flushed writes); once started again its peers resend what it lacks";

export class ShanghaiNode {
  readonly config: NodeConfig;
  readonly events: EventBus;
  readonly logger: Logger;
  readonly #clock: Clock;
  readonly #startedMs: number;
  #store: Store | undefined;
  #replication: ReplicationService | undefined;
  readonly #options: NodeOptions;
  #identity: Identity | undefined;
  #server: HttpServer | undefined;
  #idlePoll: IdlePoller | undefined;
  /** This node's hold on the process's prefaulted slabs (value_slab.ts), while it runs. */
  #prefaulted: { release(): Promise<void> } | undefined;
  #recoveryError: string | undefined;
  #stopping = false;
  #cluster: NodeCluster | undefined;
  /**
   * Set once the cluster layer has started; data is served from then on, by a node joining
   * with a fresh data directory once it knows the members (#httpContext).
   */
  #serving = false;
  readonly #stopRequested = Promise.withResolvers<void>();
  /** The node asked its process to stop and exit with a failure (see #originBehind). */
  #stopFailed = false;
  /** Metrics, traces, readiness figures, backup sessions (src/node/ops.ts). */
  readonly ops: NodeOps;

  private constructor(config: NodeConfig, options: NodeOptions) {
    this.config = config;
    this.#clock = options.clock ?? systemClock;
    this.events = options.events ?? new EventBus();
    this.logger = options.logger ??
      createLogger({ level: config.logLevel, format: config.logFormat });
    this.#startedMs = this.#clock.monoMs();
    this.#options = options;
    this.ops = new NodeOps({
      config,
      events: this.events,
      logger: this.logger,
      clock: this.#clock,
      env: options.env,
      identity: () => this.#identity,
      store: () => this.#store,
      replication: () => {
        const shipper = this.#replication?.shipper;
        return shipper && { tailCacheBytes: shipper.tailCacheBytes };
      },
      stopping: () => this.#stopping,
      readiness: () => this.readiness(),
    });
  }

  /** Starts a node; resolves once it is serving and recovered. */
  static async start(config: NodeConfig, options: NodeOptions = {}): Promise<ShanghaiNode> {
    const node = new ShanghaiNode(config, options);
    await node.#start(options.mounts ?? []);
    return node;
  }

  get store(): Store | undefined {
    return this.#store;
  }

  get replication(): ReplicationService | undefined {
    return this.#replication;
  }

  get identity(): Identity | undefined {
    return this.#identity;
  }

  get httpPort(): number {
    return this.#server?.addr.port ?? 0;
  }

  /** Node-to-node messaging (available once started). */
  get transport(): PeerTransport {
    return this.#cluster!.transport;
  }

  /** Cluster membership: `members()`, `health()`, `leave()` (available once started). */
  get membership(): MembershipDriver {
    return this.#cluster!.membership;
  }

  /** The node-to-node port actually bound (0 before start). */
  get nodePort(): number {
    return this.#cluster?.transport.port ?? 0;
  }

  /**
   * Resolves when the node asks its process to stop: after leaving the cluster, or with
   * {@link stopFailed} set, after finding its data directory rolled back.
   */
  get stopRequested(): Promise<void> {
    return this.#stopRequested.promise;
  }

  /** True when the node asked to stop because it must start again (the process exits 1). */
  get stopFailed(): boolean {
    return this.#stopFailed;
  }

  /**
   * A peer holds more of this node's own origin than its data directory does (the shipper
   * found it, numbered the next writes past the peer's count and logged it): the directory
   * was rolled back or its disk lost writes it had made durable, and no crash marker gave it a
   * new origin. Its log numbers LSNs its peers' cursors already count as entries they hold, so
   * streams resumed from those cursors would skip what it writes now. As after `shanghai
   * restore`, it takes a new origin that succeeds none (peers then forget its cursors and
   * reports and resend what its vector lacks), written to node.json before anything else, and
   * stops, exiting 1: systemd's Restart=on-failure starts it again under that origin.
   */
  async #originBehind(): Promise<void> {
    const identity = this.#identity;
    if (this.#stopFailed || identity === undefined) return;
    const previous = identityOrigin(identity);
    const { priorOrigins: _prior, ...rest } = identity;
    const next: Identity = { ...rest, origin: newOrigin(identity.nodeId) };
    this.#stopFailed = true;
    try {
      await writeIdentity(this.config.dataDir, next);
      this.#identity = next;
      this.logger.error(ORIGIN_BEHIND_STOP_MESSAGE, { origin: previous, nextOrigin: next.origin });
    } catch (error) {
      this.logger.error(ORIGIN_BEHIND_STOP_MESSAGE, {
        origin: previous,
        error: `cannot write node.json: ${(error as Error).message}`,
        advice:
          "Fix the data directory, or empty it and start the node again (it rejoins and gets everything from its peers)",
      });
    }
    this.#stopRequested.resolve();
  }

  /**
   * A node that knew peers when it last ran (cluster.json) and starts under the origin it had
   * holds its first local writes until a peer's vector has arrived (at most
   * ORIGIN_CHECK_WAIT_MS): should its data directory have been put back from a copy, that
   * vector shows the peers holding more of its origin (#originBehind), and writes numbered
   * before it could take numbers they hold. A new origin drawn at this start (a crash that
   * shipped unsynced entries) has nothing to check.
   */
  #holdWritesForOriginCheck(store: Store, peerVectorSeen: Promise<void>): void {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const waited = new Promise<void>((resolve) => {
      const next = setTimeout(resolve, ORIGIN_CHECK_WAIT_MS);
      Deno.unrefTimer(next);
      timer = next;
    });
    store.holdLocalWrites(
      Promise.race([peerVectorSeen, waited]).finally(() => clearTimeout(timer)),
    );
  }

  readiness(): Readiness {
    const reasons: string[] = [];
    if (this.#recoveryError) reasons.push(`recovery failed: ${this.#recoveryError}`);
    else if (!this.#store) reasons.push("recovery in progress");
    else if (!this.#serving) reasons.push("joining the cluster");
    else if (this.#cluster?.joined() === false) {
      reasons.push(
        "joining the cluster: no member has sent its member list yet (are the seeds up?)",
      );
    }
    if (this.#stopping) reasons.push("shutting down");
    const failure = this.#store?.wal.failure;
    if (failure !== undefined) reasons.push(`WAL stopped after an I/O error: ${failure}`);
    reasons.push(...this.ops.readinessProblems());
    return { ready: reasons.length === 0, reasons };
  }

  status(): Record<string, unknown> {
    const store = this.#store;
    return {
      nodeId: this.#identity?.nodeId ?? this.config.nodeId ?? null,
      clusterId: this.#identity?.clusterId ?? null,
      origin: this.#store?.origin ?? null,
      version: VERSION,
      ready: this.readiness().ready,
      uptimeMs: Math.round(this.#clock.monoMs() - this.#startedMs),
      lastLsn: store?.lastLsn ?? 0,
      firstLsn: store?.wal.firstLsn ?? 0,
      snapshotLsn: store?.snapshotLsn ?? 0,
      keys: store?.keyspace.size ?? 0,
      tombstones: store?.keyspace.tombstones ?? 0,
      segments: store?.wal.segments().length ?? 0,
      bytesOnDisk: store?.wal.bytesOnDisk ?? 0,
      dataDir: this.config.dataDir,
      walDir: store?.walDir ?? null,
      httpAddress: `${this.config.host}:${this.httpPort}`,
      nodeAddress: this.#cluster?.transport.address ?? null,
      // Whether the idle poller runs (src/node/idle_poll.ts): why a core looks busy under traffic.
      idlePolling: this.#idlePoll?.running ?? false,
      clusterState: this.#cluster?.membership.health() ?? null,
    };
  }

  #httpContext(): HttpContext {
    return {
      // Data is served once the node knows its cluster, not as soon as recovery is done: until
      // then replication has not started, or counts a quorum among the members seen so far
      // (a fresh node joining knows only itself), and a quorum write or read would be answered
      // from too few copies.
      store: () => this.#serving && this.#cluster?.joined() !== false ? this.#store : undefined,
      readiness: () => this.readiness(),
      status: () => this.status(),
      events: this.events,
      logger: this.logger,
      replication: () => this.#replication,
    };
  }

  async #start(mounts: RouteMount[]): Promise<void> {
    const httpContext = this.#httpContext();
    this.#idlePoll = await IdlePoller.start({
      windowMicros: this.config.idlePollMicros,
      onUnavailable: (reason) =>
        this.logger.info("Idle polling is off: cores may halt between requests", { reason }),
    });
    const idlePoll = this.#idlePoll;
    this.#startPrefaulting();
    const app = createApp(httpContext, [
      clusterRoutes(() => this.#cluster),
      ...this.ops.mounts(),
      ...mounts,
    ]);
    this.#server = HttpServer.listen({
      hostname: this.config.host,
      port: this.config.adminPort,
      handler: (request) => app.fetch(request),
      fastRoute: kvPutRoute(httpContext),
      onRequest: () => idlePoll.touch(),
      onError: (error) => {
        this.logger.error("HTTP server error", { error: String(error) });
        return new Response(
          JSON.stringify({ error: { code: "internal", message: "Internal error" } }),
          {
            status: 500,
            headers: { "content-type": "application/json" },
          },
        );
      },
    });
    try {
      const loaded = await originAfterUnsyncedShipping(
        this.config.dataDir,
        await loadOrCreateIdentity(this.config.dataDir, this.config.nodeId, this.#clock.nowMs()),
      );
      this.#identity = loaded.identity;
      if (loaded.replaced !== undefined) {
        this.logger.info(
          "The last run stopped without closing after shipping entries before their fdatasync: this node writes under a new origin, and peers send back what it lost",
          { origin: loaded.identity.origin, previousOrigin: loaded.replaced },
        );
      }
      await this.ops.start();
      this.#store = await Store.open({
        dataDir: this.config.dataDir,
        walDir: this.config.walDir,
        nodeId: this.#identity.nodeId,
        origin: identityOrigin(this.#identity),
        priorOrigins: this.#identity.priorOrigins,
        valueBytesMax: this.config.valueBytesMax,
        segmentBytesMax: this.config.segmentBytes,
        batchEntriesMax: this.config.batchEntriesMax,
        replicatedBatchEntriesMax: this.config.batchEntriesMaxReplicated,
        batchBytesMax: this.config.batchBytesMax,
        preallocateBytes: this.config.walPreallocateBytes,
        inlineSync: this.config.walSync === "inline",
        beforeSync: () => idlePoll.touch(),
        expectedWriters: () => this.#server?.writersExpected() ?? 0,
        gatherMicros: this.config.walGatherMicros,
        dropBehindBytes: this.config.walDropBehindBytes,
        snapshotEveryBytes: this.config.snapshotEveryBytes,
        snapshotWalPercent: this.config.snapshotWalPercent,
        retainBytes: this.config.retainBytes,
        retentionHoldLsn: () => this.#replication?.shipper.retentionHoldLsn(),
        followerCursors: () => this.#replication?.shipper.followerCursors(),
        resolver: this.#options.resolver,
        clock: this.#clock,
        events: this.events,
        logger: this.logger,
      });
      // The last LSN recovered: under a new origin after a crash, the log is the same to here.
      const recoveredLsn = this.#store.lastLsn;
      // Replication registers its handlers as soon as the transport listens (onTransport):
      // a peer opens its stream to this node while the join to the seeds is still under way.
      const startReplication = (transport: PeerTransport, knewPeers: boolean) => {
        this.#replication = new ReplicationService({
          store: this.#store!,
          transport: this.#options.transport ?? transport,
          // Quorum counts every member that has not left, down ones included. The membership
          // hands back the same array until it changes, so the shipper counts it once per
          // change. (Until the cluster layer has started, the shipper counts this node and
          // the peers it has seen.)
          members: this.#options.members ?? (() => this.#cluster?.memberIds() ?? NO_MEMBERS),
          ackDefault: this.config.ackDefault,
          ackTimeoutMs: this.config.ackTimeoutMs,
          creditEntries: this.config.replCreditEntries,
          batchEntriesMax: this.config.replBatchEntries,
          batchBytesMax: this.config.replBatchBytes,
          tombstoneGraceMs: this.config.tombstoneGraceMs,
          tombstoneSweepMs: this.config.tombstoneSweepMs,
          succeeds: loaded.replaced === undefined
            ? undefined
            : { origin: loaded.replaced, throughLsn: recoveredLsn },
          mayShipUnsynced: () => {
            const marked = markShippingUnsynced(this.config.dataDir);
            if (!marked) {
              this.logger.warn(
                "Cannot record in the data directory that entries ship before their fdatasync: replication ships only durable entries",
                { dataDir: this.config.dataDir },
              );
            }
            return marked;
          },
          clock: this.#clock,
          events: this.events,
          logger: this.logger,
        });
        this.#replication.start();
        if (knewPeers && loaded.replaced === undefined) {
          this.#holdWritesForOriginCheck(this.#store!, this.#replication.shipper.peerVectorSeen);
        }
      };
      this.events.on("replication.origin.behind", () => void this.#originBehind());
      this.#cluster = await NodeCluster.start({
        config: this.config,
        identity: this.#identity,
        store: this.#store,
        httpAddress: () => `${this.config.host}:${this.httpPort}`,
        onIdentityChanged: (identity) => this.#identity = identity,
        onLeft: () => this.#stopRequested.resolve(),
        onTransport: startReplication,
        clock: this.#clock,
        events: this.events,
        logger: this.logger,
      });
    } catch (error) {
      this.#recoveryError = (error as Error).message;
      this.#replication?.stop();
      await this.ops.stop();
      await this.#server.shutdown();
      await this.#store?.close().catch(() => {});
      this.#idlePoll.stop();
      await this.#prefaulted?.release();
      throw error;
    }
    this.#serving = true;
    this.logger.info("Node ready", {
      nodeId: this.#identity.nodeId,
      clusterId: this.#identity.clusterId,
      httpPort: this.httpPort,
      nodePort: this.nodePort,
      lastLsn: this.#store.lastLsn,
      keys: this.#store.keyspace.size,
      recoveryMs: Math.round(this.#clock.monoMs() - this.#startedMs),
      // False for a node joining without remembered members whose seeds have not answered
      // (a fresh data directory): it serves no data yet.
      joined: this.#cluster.joined(),
    });
    this.ops.onReady();
  }

  /**
   * Graceful stop: stop accepting requests and answer the ones in flight, stop replication and
   * leave the cluster's gossip, finish in-flight batches, fsync, snapshot, close.
   */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    this.logger.info("Node stopping");
    const startedMs = this.#clock.monoMs();
    const stepsMs: Record<string, number> = {};
    // HTTP first, while replication runs: a write in flight waits for its ack level as at any
    // other time (at most the ack timeout) and gets its real answer, not a 504 for the stop.
    await this.#stopStep(
      "http",
      stepsMs,
      () => this.#server?.shutdown(),
      () => ({ requests: this.#server?.pending().slice(0, 8) }),
    );
    await this.#stopStep("sessions", stepsMs, () => this.ops.closeSessions());
    await this.#stopStep("replication", stepsMs, () => this.#replication?.stop());
    await this.#stopStep("cluster", stepsMs, () => this.#cluster?.stop());
    await this.#stopStep("store", stepsMs, async () => {
      const store = this.#store;
      if (!store) return;
      await store.close();
      // Every entry that went out is durable here: the next start keeps this origin.
      if (store.writtenLsn === store.lastLsn) await clearShippingUnsynced(this.config.dataDir);
    });
    await this.#stopStep("ops", stepsMs, () => this.ops.stop());
    this.#idlePoll?.stop();
    await this.#prefaulted?.release();
    this.logger.info("Node stopped", {
      stopMs: Math.round(this.#clock.monoMs() - startedMs),
      stepsMs,
    });
  }

  /** Keeps prefaulted slabs ready for incoming values (value_slab.ts), unless configured off. */
  #startPrefaulting(): void {
    if (this.config.prefaultSlabs === 0) return;
    const held = holdPrefaultedSlabs(this.config.prefaultSlabs);
    if ("problem" in held) {
      this.logger.info("Prefaulted slabs are off: values take page faults on the event loop", {
        reason: held.problem,
      });
    } else this.#prefaulted = held;
  }

  /**
   * One step of {@link stop}, timed into `stepsMs`. A step still waiting after
   * {@link STOP_STEP_WARN_MS} is logged (and again every interval), so an operator whose node
   * does not stop sees which part holds it instead of a silent process.
   */
  async #stopStep(
    name: string,
    stepsMs: Record<string, number>,
    step: () => unknown,
    detail: () => Record<string, unknown> = () => ({}),
  ): Promise<void> {
    const startedMs = this.#clock.monoMs();
    const watchdog = setInterval(() => {
      this.logger.warn("Node stop is still waiting", {
        step: name,
        waitedMs: Math.round(this.#clock.monoMs() - startedMs),
        ...detail(),
      });
    }, STOP_STEP_WARN_MS);
    try {
      await step();
    } finally {
      clearInterval(watchdog);
      stepsMs[name] = Math.round(this.#clock.monoMs() - startedMs);
    }
  }
}
