/**
 * The node's operations shell: metrics, traces, readiness figures (replication lag, free disk),
 * log lines for operator events, and online backup sessions, wired to one node. Kept apart from
 * node.ts so the composition root only calls `start`, `stop`, `mounts` and
 * `readinessProblems`.
 *
 * One timer (every DISK_SAMPLE_INTERVAL_MS) samples free disk, logs readiness changes and
 * expires idle backup sessions. With metrics on, a second one (every LOOP_DELAY_SAMPLE_MS)
 * measures the event loop's delay. Both are unref'd so they never hold the process open.
 *
 * @module
 */
import type { RouteMount } from "../api/http/app.ts";
import type { Readiness } from "../api/http/context.ts";
import { metricsRoutes } from "../api/http/metrics_routes.ts";
import { backupRoutes, BackupSessions } from "../backup/mod.ts";
import { type Identity, IDENTITY_FILE } from "../cluster/identity.ts";
import type { Clock } from "../common/clock.ts";
import { DISK_SAMPLE_INTERVAL_MS, LOOP_DELAY_SAMPLE_MS } from "../common/limits.ts";
import type { Store } from "../storage/kv/store.ts";
import { logEvents, ReadinessLog } from "../telemetry/event_log.ts";
import { startLoopDelaySampler } from "../telemetry/loop_delay.ts";
import type { EventBus } from "../telemetry/events.ts";
import { HealthWatch, readinessProblems } from "../telemetry/health.ts";
import type { Logger } from "../telemetry/log.ts";
import { Metrics, otlpMetricExporter } from "../telemetry/metrics.ts";
import type { Tracing } from "../telemetry/tracing.ts";
import { tracingWanted } from "../telemetry/tracing_wanted.ts";
import type { NodeConfig } from "./config.ts";
import { VERSION } from "./version.ts";

export interface NodeOpsOptions {
  config: NodeConfig;
  events: EventBus;
  logger: Logger;
  clock: Clock;
  /** Environment for OTEL_* settings (default: the process environment). */
  env?: Record<string, string | undefined>;
  identity: () => Identity | undefined;
  store: () => Store | undefined;
  /** The replication shell's figures, undefined while it is not running. */
  replication?: () => { tailCacheBytes: number } | undefined;
  stopping: () => boolean;
  readiness: () => Readiness;
}

/** Operations parts of one node. */
export class NodeOps {
  readonly #options: NodeOpsOptions;
  readonly #health: HealthWatch;
  readonly #backups: BackupSessions;
  readonly #readinessLog: ReadinessLog;
  #metrics: Metrics | undefined;
  #stopLoopDelay: (() => void) | undefined;
  #tracing: Tracing | undefined;
  #logOff: (() => void) | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(options: NodeOpsOptions) {
    this.#options = options;
    this.#health = new HealthWatch(
      options.events,
      options.config.dataDir,
      () => options.identity()?.nodeId,
    );
    this.#backups = new BackupSessions({
      logger: options.logger,
      nowMs: () => options.clock.monoMs(),
    });
    this.#readinessLog = new ReadinessLog(options.logger);
  }

  /** The node's metrics, undefined with `--metrics off` or before start. */
  get metrics(): Metrics | undefined {
    return this.#metrics;
  }

  /** Route groups: GET /metrics and the online backup admin routes. */
  mounts(): RouteMount[] {
    const o = this.#options;
    return [
      metricsRoutes(() =>
        this.#metrics
          ? this.#health.sampleDisk().then(() => this.#metrics!.prometheus())
          : undefined
      ),
      backupRoutes(this.#backups, () => {
        const store = o.store();
        const identity = o.identity();
        if (!store || !identity || o.stopping()) return undefined;
        return {
          store,
          nodeId: identity.nodeId,
          clusterId: identity.clusterId,
          identityPath: `${o.config.dataDir}/${IDENTITY_FILE}`,
          priorOrigins: identity.priorOrigins,
        };
      }),
    ];
  }

  /** Readiness reasons from replication lag and free disk (empty when fine). */
  readinessProblems(): string[] {
    return readinessProblems(this.#health.figures(), this.#options.config);
  }

  /** Starts telemetry once the identity is known (before store recovery, to see its events). */
  async start(): Promise<void> {
    const o = this.#options;
    const env = o.env ?? Deno.env.toObject();
    const identity = o.identity();
    const resource = { nodeId: identity?.nodeId, clusterId: identity?.clusterId, version: VERSION };
    if (tracingWanted(env)) {
      const { Tracing } = await import("../telemetry/tracing.ts");
      this.#tracing = new Tracing({ events: o.events, env, ...resource });
      o.logger.info("Exporting traces over OTLP", { endpoint: this.#tracing.endpoint });
    }
    if (o.config.metrics === "on") {
      this.#metrics = new Metrics({
        events: o.events,
        env,
        otlpExporter: await otlpMetricExporter(env),
        ...resource,
        sources: {
          disk: () => this.#health.disk,
          replication: () => o.replication?.(),
          store: () => {
            const store = o.store();
            if (!store) return undefined;
            const shared = store.keyspace.sharedBuffers();
            return {
              lastLsn: store.lastLsn,
              firstLsn: store.wal.firstLsn,
              segments: store.wal.segments().length,
              walBytes: store.wal.bytesOnDisk,
              keys: store.keyspace.size,
              tombstones: store.keyspace.tombstones,
              sharedBufferBytes: shared.bytes,
              sharedBufferLiveBytes: shared.liveBytes,
            };
          },
        },
      });
      if (this.#metrics.otlpEndpoint) {
        o.logger.info("Exporting metrics over OTLP", { endpoint: this.#metrics.otlpEndpoint });
      }
      this.#stopLoopDelay = startLoopDelaySampler(
        o.clock,
        LOOP_DELAY_SAMPLE_MS,
        (delayMs) => o.events.emit("process.loop.delay", { delayMs }),
      );
    }
    this.#logOff = logEvents(o.events, o.logger, () => o.clock.monoMs());
    await this.#health.sampleDisk();
    this.#timer = setInterval(() => {
      this.#health.sampleDisk().then(() => {
        if (o.store() && !o.stopping()) this.#readinessLog.observe(o.readiness());
      }).catch(() => {});
      this.#backups.sweep();
    }, DISK_SAMPLE_INTERVAL_MS);
    Deno.unrefTimer(this.#timer as unknown as number);
  }

  /** Called once the node is ready: logs readiness if it is not (a disk floor, say). */
  onReady(): void {
    this.#readinessLog.observe(this.#options.readiness());
  }

  /** Ends backup sessions (before the store closes). */
  closeSessions(): void {
    this.#backups.closeAll();
  }

  /** Stops the timer, unsubscribes, and flushes the exporters. */
  async stop(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#stopLoopDelay?.();
    this.#backups.closeAll();
    this.#health.close();
    this.#logOff?.();
    await this.#metrics?.shutdown();
    await this.#tracing?.shutdown();
  }
}
