/**
 * The composition root: builds one node from a validated config and wires the shells
 * together. Start order: HTTP first (so /health answers and /ready says 503 during recovery),
 * then identity and store recovery, then readiness. Stop order is the reverse: stop taking
 * requests, let in-flight batches finish and fsync, snapshot, close.
 *
 * @module
 */
import { type Clock, systemClock } from "../common/clock.ts";
import { createApp, type RouteMount } from "../api/http/app.ts";
import type { HttpContext, Readiness } from "../api/http/context.ts";
import { Store } from "../storage/kv/store.ts";
import { metricsRoutes } from "../api/http/metrics_routes.ts";
import { backupRoutes, BackupSessions } from "../backup/mod.ts";
import { DISK_SAMPLE_INTERVAL_MS } from "../common/limits.ts";
import { HealthWatch, readinessProblems } from "../telemetry/health.ts";
import { Metrics } from "../telemetry/metrics.ts";
import { logEvents, ReadinessLog } from "../telemetry/event_log.ts";
import { Tracing, tracingWanted } from "../telemetry/tracing.ts";
import { EventBus } from "../telemetry/events.ts";
import { createLogger, type Logger } from "../telemetry/log.ts";
import type { NodeConfig } from "./config.ts";
import { IDENTITY_FILE, type Identity, loadOrCreateIdentity } from "./identity.ts";
import { VERSION } from "./version.ts";

export interface NodeOptions {
  clock?: Clock;
  logger?: Logger;
  events?: EventBus;
  mounts?: RouteMount[];
  /** Environment for OTEL_* telemetry settings (default: the process environment). */
  env?: Record<string, string | undefined>;
}

export class ShanghaiNode {
  readonly config: NodeConfig;
  readonly events: EventBus;
  readonly logger: Logger;
  readonly #clock: Clock;
  readonly #startedMs: number;
  #store: Store | undefined;
  #identity: Identity | undefined;
  #server: Deno.HttpServer<Deno.NetAddr> | undefined;
  #recoveryError: string | undefined;
  #stopping = false;
  // Operations (metrics, readiness figures, online backup): see src/telemetry, src/backup.
  #metrics: Metrics | undefined;
  readonly #health: HealthWatch;
  readonly #backups: BackupSessions;
  #opsTimer: ReturnType<typeof setInterval> | undefined;
  #opsLogOff: (() => void) | undefined;
  #tracing: Tracing | undefined;
  readonly #env: Record<string, string | undefined> | undefined;
  #readinessLog: ReadinessLog | undefined;

  private constructor(config: NodeConfig, options: NodeOptions) {
    this.config = config;
    this.#clock = options.clock ?? systemClock;
    this.events = options.events ?? new EventBus();
    this.logger = options.logger ?? createLogger({ level: config.logLevel, format: config.logFormat });
    this.#startedMs = this.#clock.monoMs();
    this.#env = options.env;
    this.#health = new HealthWatch(this.events, config.dataDir, () => this.#identity?.nodeId);
    this.#backups = new BackupSessions({ logger: this.logger, nowMs: () => this.#clock.monoMs() });
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

  get identity(): Identity | undefined {
    return this.#identity;
  }

  get httpPort(): number {
    return this.#server?.addr.port ?? 0;
  }

  readiness(): Readiness {
    const reasons: string[] = [];
    if (this.#recoveryError) reasons.push(`recovery failed: ${this.#recoveryError}`);
    else if (!this.#store) reasons.push("recovery in progress");
    if (this.#stopping) reasons.push("shutting down");
    const failure = this.#store?.wal.failure;
    if (failure !== undefined) reasons.push(`WAL stopped after an I/O error: ${failure}`);
    reasons.push(...readinessProblems(this.#health.figures(), this.config));
    return { ready: reasons.length === 0, reasons };
  }

  status(): Record<string, unknown> {
    const store = this.#store;
    return {
      nodeId: this.#identity?.nodeId ?? this.config.nodeId ?? null,
      clusterId: this.#identity?.clusterId ?? null,
      version: VERSION,
      ready: this.readiness().ready,
      uptimeMs: Math.round(this.#clock.monoMs() - this.#startedMs),
      lastLsn: store?.lastLsn ?? 0,
      firstLsn: store?.wal.firstLsn ?? 0,
      snapshotLsn: store?.snapshotLsn ?? 0,
      keys: store?.keyspace.size ?? 0,
      segments: store?.wal.segments().length ?? 0,
      bytesOnDisk: store?.wal.bytesOnDisk ?? 0,
      dataDir: this.config.dataDir,
      walDir: store?.walDir ?? null,
      httpAddress: `${this.config.host}:${this.httpPort}`,
    };
  }

  /** The node's metrics, undefined with `--metrics off` or before the identity is loaded. */
  get metrics(): Metrics | undefined {
    return this.#metrics;
  }

  #opsMounts(): RouteMount[] {
    return [
      metricsRoutes(() => this.#metrics ? this.#health.sampleDisk().then(() => this.#metrics!.prometheus()) : undefined),
      backupRoutes(this.#backups, () =>
        this.#store && this.#identity && !this.#stopping
          ? {
            store: this.#store,
            nodeId: this.#identity.nodeId,
            clusterId: this.#identity.clusterId,
            identityPath: `${this.config.dataDir}/${IDENTITY_FILE}`,
          }
          : undefined),
    ];
  }

  async #startOps(): Promise<void> {
    const env = this.#env ?? Deno.env.toObject();
    if (tracingWanted(env)) {
      this.#tracing = new Tracing({
        events: this.events,
        env,
        nodeId: this.#identity?.nodeId,
        clusterId: this.#identity?.clusterId,
        version: VERSION,
      });
      this.logger.info("Exporting traces over OTLP", { endpoint: this.#tracing.endpoint });
    }
    if (this.config.metrics === "on") {
      this.#metrics = new Metrics({
        events: this.events,
        env,
        nodeId: this.#identity?.nodeId,
        clusterId: this.#identity?.clusterId,
        version: VERSION,
        sources: {
          disk: () => this.#health.disk,
          store: () => {
            const store = this.#store;
            if (!store) return undefined;
            return {
              lastLsn: store.lastLsn,
              firstLsn: store.wal.firstLsn,
              segments: store.wal.segments().length,
              walBytes: store.wal.bytesOnDisk,
              keys: store.keyspace.size,
            };
          },
        },
      });
      if (this.#metrics.otlpEndpoint) this.logger.info("Exporting metrics over OTLP", { endpoint: this.#metrics.otlpEndpoint });
    }
    this.#opsLogOff = logEvents(this.events, this.logger, () => this.#clock.monoMs());
    this.#readinessLog = new ReadinessLog(this.logger);
    await this.#health.sampleDisk();
    this.#opsTimer = setInterval(() => {
      this.#health.sampleDisk().then(() => {
        if (this.#store && !this.#stopping) this.#readinessLog?.observe(this.readiness());
      }).catch(() => {});
      this.#backups.sweep();
    }, DISK_SAMPLE_INTERVAL_MS);
    Deno.unrefTimer(this.#opsTimer as unknown as number);
  }

  async #stopOps(): Promise<void> {
    if (this.#opsTimer !== undefined) clearInterval(this.#opsTimer);
    this.#backups.closeAll();
    this.#health.close();
    this.#opsLogOff?.();
    await this.#metrics?.shutdown();
    await this.#tracing?.shutdown();
  }

  #httpContext(): HttpContext {
    return {
      store: () => this.#store,
      readiness: () => this.readiness(),
      status: () => this.status(),
      events: this.events,
      logger: this.logger,
    };
  }

  async #start(mounts: RouteMount[]): Promise<void> {
    const app = createApp(this.#httpContext(), [...this.#opsMounts(), ...mounts]);
    this.#server = Deno.serve({
      hostname: this.config.host,
      port: this.config.adminPort,
      onListen: () => {},
      onError: (error) => {
        this.logger.error("HTTP server error", { error: String(error) });
        return new Response(JSON.stringify({ error: { code: "internal", message: "Internal error" } }), {
          status: 500,
          headers: { "content-type": "application/json" },
        });
      },
    }, app.fetch);
    try {
      this.#identity = await loadOrCreateIdentity(this.config.dataDir, this.config.nodeId, this.#clock.nowMs());
      await this.#startOps();
      this.#store = await Store.open({
        dataDir: this.config.dataDir,
        walDir: this.config.walDir,
        nodeId: this.#identity.nodeId,
        valueBytesMax: this.config.valueBytesMax,
        segmentBytesMax: this.config.segmentBytes,
        batchEntriesMax: this.config.batchEntriesMax,
        batchBytesMax: this.config.batchBytesMax,
        snapshotEveryBytes: this.config.snapshotEveryBytes,
        retainBytes: this.config.retainBytes,
        clock: this.#clock,
        events: this.events,
        logger: this.logger,
      });
    } catch (error) {
      this.#recoveryError = (error as Error).message;
      await this.#stopOps();
      await this.#server.shutdown();
      throw error;
    }
    this.logger.info("Node ready", {
      nodeId: this.#identity.nodeId,
      clusterId: this.#identity.clusterId,
      httpPort: this.httpPort,
      lastLsn: this.#store.lastLsn,
      keys: this.#store.keyspace.size,
      recoveryMs: Math.round(this.#clock.monoMs() - this.#startedMs),
    });
    this.#readinessLog?.observe(this.readiness());
  }

  /** Graceful stop: stop accepting requests, finish in-flight batches, fsync, snapshot, close. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    this.logger.info("Node stopping");
    await this.#server?.shutdown();
    this.#backups.closeAll();
    await this.#store?.close();
    await this.#stopOps();
    this.logger.info("Node stopped");
  }
}
