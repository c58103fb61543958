/**
 * Every instrument Shanghai records, in one place. Counters and gauges are OpenTelemetry ones
 * (`@opentelemetry/api` types, backed by `@opentelemetry/sdk-metrics`); histograms are recorded by
 * histograms.ts, which skips the SDK's per-record work, and reach the same readers. All are fed
 * from the event bus, so the write path knows nothing about metrics: it emits
 * `wal.write.completed` and moves on.
 *
 * Two readers can watch the same meter provider:
 * - a pull reader that renders Prometheus text for `GET /metrics` (always on);
 * - an OTLP/HTTP push reader, only when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` or
 *   `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` variable is set (or `OTEL_METRICS_EXPORTER=otlp`).
 *
 * Cluster and replication figures (members by state, nodes down, lag and credit per peer,
 * conflicts, heartbeat round trips) are built from their events too, so they appear as soon
 * as the layers that emit those events run.
 *
 * Names follow the operations guide (seed 002): `shanghai_wal_write_latency`,
 * `shanghai_replication_lag`, `shanghai_cluster_nodes_down`, `shanghai_disk_usage_percent`.
 * Latencies are in milliseconds because the alert thresholds are stated in milliseconds.
 *
 * @module
 */
import type { Attributes, Meter } from "@opentelemetry/api";
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  type IMetricReader,
  MeterProvider,
  PeriodicExportingMetricReader,
  type PushMetricExporter,
} from "@opentelemetry/sdk-metrics";
import type { EventBus } from "./events.ts";
import type { DiskUsage } from "./disk.ts";
import { type Histogram, Histograms, type HistogramSeries } from "./histograms.ts";
import type { PrefaultedSlabStats } from "../common/prefaulted_slabs.ts";
import { prefaultStats } from "../common/value_slab.ts";

/** Latency buckets in ms: fine below the 50 ms alert threshold, coarse above it. */
export const LATENCY_BUCKETS_MS = [
  0.25,
  0.5,
  1,
  2,
  5,
  10,
  25,
  50,
  100,
  250,
  500,
  1000,
  2500,
  10000,
];
/** Entries per group-commit batch. */
export const BATCH_ENTRIES_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000, 10000];
/** Bytes per group-commit batch. */
export const BATCH_BYTES_BUCKETS = [
  256,
  1024,
  4096,
  16384,
  65536,
  262144,
  1048576,
  4194304,
  16777216,
];
/** Replication apply delay: HLC timestamps have whole milliseconds, so steps of 1 ms at first. */
export const APPLY_DELAY_BUCKETS_MS = [
  1,
  2,
  3,
  4,
  5,
  7.5,
  10,
  15,
  20,
  30,
  50,
  75,
  100,
  250,
  500,
  1000,
  2500,
  10000,
  60000,
];
/**
 * Follower ack latency in ms: a batch's round trip holds the follower's fdatasync (0.2-1 ms
 * on our machines, more under load), so steps of a quarter to one ms up to 5 ms, where
 * `ack=quorum` latency is decided.
 */
export const ACK_LATENCY_BUCKETS_MS = [
  0.25,
  0.5,
  0.75,
  1,
  1.5,
  2,
  3,
  4,
  5,
  7.5,
  10,
  15,
  25,
  50,
  100,
  250,
  1000,
  10000,
];
/** Snapshot and retention durations in ms. */
export const TASK_BUCKETS_MS = [1, 5, 10, 50, 100, 500, 1000, 5000, 10000, 60000];
/** OTLP push interval unless OTEL_METRIC_EXPORT_INTERVAL says otherwise. */
export const OTLP_EXPORT_INTERVAL_MS_DEFAULT = 60_000;
/** Distinct (method, route, status) series of HTTP metrics; routes are patterns, so this holds. */
export const HTTP_SERIES_MAX = 512;
/** Distinct replication peers tracked; more are folded into no new series (bounded cardinality). */
export const PEERS_TRACKED_MAX = 1024;

/** What the metrics read from the node besides events (gauges sampled at collection time). */
export interface MetricsSources {
  /** The latest disk sample of the data directory's file system (see HealthWatch). */
  disk?: () => DiskUsage | undefined;
  /** Store figures, undefined while the store recovers. */
  store?: () => {
    lastLsn: number;
    firstLsn: number;
    segments: number;
    walBytes: number;
    /** Live keys, and deletes kept as tombstones until every member holds them. */
    keys: number;
    tombstones: number;
    /** Replication payloads that values are views into, and the values' share (Keyspace). */
    sharedBufferBytes?: number;
    sharedBufferLiveBytes?: number;
  } | undefined;
  /** The process's memory (default: Deno.memoryUsage). */
  memory?: () => Deno.MemoryUsage;
  /** Replication figures, undefined while replication is not running. */
  replication?: () => { tailCacheBytes: number } | undefined;
  /** The value slabs' counters (default: the process's, from value_slab.ts). */
  slabs?: () => Record<string, PrefaultedSlabStats>;
}

export interface MetricsOptions {
  events: EventBus;
  sources?: MetricsSources;
  /** Resource attributes: node id, cluster id. */
  nodeId?: string;
  clusterId?: string;
  version?: string;
  /** Environment to read OTEL_* from (default: Deno.env). */
  env?: Record<string, string | undefined>;
  /**
   * The OTLP push exporter, when `env` asks for one: make it with {@link otlpMetricExporter},
   * which loads the exporter's package only then (see there). Without it nothing is pushed.
   */
  otlpExporter?: PushMetricExporter;
}

/** Cluster and replication state rebuilt from events; read by gauges and readiness. */
export interface PeerFigures {
  /** Member id -> state (up, suspect, down, left, ...). */
  members: Map<string, string>;
  /** `${follower}|${leader}` -> lag in entries. */
  lag: Map<string, { follower: string; leader: string; lag: number }>;
  credit: Map<string, { follower: string; leader: string; credit: number }>;
}

function otlpWanted(env: Record<string, string | undefined>): boolean {
  const exporter = env.OTEL_METRICS_EXPORTER?.trim();
  if (exporter === "none") return false;
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true") return false;
  return exporter === "otlp" || !!env.OTEL_EXPORTER_OTLP_ENDPOINT ||
    !!env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT;
}

function otlpUrl(env: Record<string, string | undefined>): string {
  const specific = env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT?.trim();
  if (specific) return specific;
  const base = (env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() || "http://localhost:4318").replace(
    /\/+$/,
    "",
  );
  return `${base}/v1/metrics`;
}

function otlpHeaders(env: Record<string, string | undefined>): Record<string, string> {
  const raw = env.OTEL_EXPORTER_OTLP_METRICS_HEADERS ?? env.OTEL_EXPORTER_OTLP_HEADERS ?? "";
  const out: Record<string, string> = {};
  for (const pair of raw.split(",")) {
    const at = pair.indexOf("=");
    if (at > 0) {
      out[decodeURIComponent(pair.slice(0, at).trim())] = decodeURIComponent(
        pair.slice(at + 1).trim(),
      );
    }
  }
  return out;
}

/**
 * The OTLP/HTTP metric exporter `env` asks for, or undefined when it asks for none. Its package
 * (with the protobuf and HTTP code under it) is imported here, only then: loading every
 * OpenTelemetry exporter at start took about a tenth of a node's restart.
 */
export async function otlpMetricExporter(
  env: Record<string, string | undefined>,
): Promise<PushMetricExporter | undefined> {
  if (!otlpWanted(env)) return undefined;
  const { OTLPMetricExporter } = await import("@opentelemetry/exporter-metrics-otlp-http");
  return new OTLPMetricExporter({ url: otlpUrl(env), headers: otlpHeaders(env) });
}

/** The key of a follower/leader pair in {@link PeerFigures}. */
function pairKey(pair: { follower: string; leader: string }): string {
  return `${pair.follower}|${pair.leader}`;
}

/**
 * Sets `key` in a peer map, except that past PEERS_TRACKED_MAX keys a new one is dropped:
 * each key becomes a metric series, so a stream of unknown peers must not grow them unbounded.
 */
function setTracked<V>(map: Map<string, V>, key: string, value: V): void {
  if (map.size < PEERS_TRACKED_MAX || map.has(key)) map.set(key, value);
}

/** A gauge `name` that reports `figure` of every follower/leader pair in `pairs` when read. */
function observePairs<P extends { follower: string; leader: string }>(
  meter: Meter,
  gauge: {
    name: string;
    description: string;
    pairs: Map<string, P>;
    figure: (pair: P) => number;
  },
): void {
  meter.createObservableGauge(gauge.name, { description: gauge.description }).addCallback(
    (result) => {
      for (const p of gauge.pairs.values()) {
        result.observe(gauge.figure(p), { follower: p.follower, leader: p.leader });
      }
    },
  );
}

/**
 * Gauges that each report one `figure` of a sample `read` takes once per collection (nothing
 * while it returns undefined).
 */
function observeSample<S>(
  meter: Meter,
  read: () => S | undefined,
  gauges: { name: string; description: string; unit?: string; figure: (sample: S) => number }[],
): void {
  const instruments = gauges.map((g) =>
    meter.createObservableGauge(g.name, { description: g.description, unit: g.unit })
  );
  meter.addBatchObservableCallback((result) => {
    const sample = read();
    if (sample === undefined) return;
    gauges.forEach((g, i) => result.observe(instruments[i], g.figure(sample)));
  }, instruments);
}

/** The node's meter provider, its instruments, and the readers that export them. */
export class Metrics {
  readonly peers: PeerFigures = { members: new Map(), lag: new Map(), credit: new Map() };
  readonly otlpEndpoint: string | undefined;
  readonly #provider: MeterProvider;
  /** Every histogram: recorded by our own code, collected by the provider's readers. */
  readonly #histograms: Histograms;
  readonly #prometheus: PrometheusExporter;
  readonly #serializer = new PrometheusSerializer();
  readonly #unsubscribe: (() => void)[] = [];
  readonly #sources: MetricsSources;

  constructor(options: MetricsOptions) {
    const env = options.env ?? Deno.env.toObject();
    this.#sources = options.sources ?? {};
    const attributes: Attributes = { "service.name": env.OTEL_SERVICE_NAME?.trim() || "shanghai" };
    if (options.nodeId) attributes["service.instance.id"] = options.nodeId;
    if (options.clusterId) attributes["shanghai.cluster.id"] = options.clusterId;
    if (options.version) attributes["service.version"] = options.version;
    const resource = resourceFromAttributes(attributes);
    this.#histograms = new Histograms(resource, { name: "shanghai", version: options.version });
    const metricProducers = [this.#histograms];
    this.#prometheus = new PrometheusExporter({ preventServerStart: true, metricProducers });
    const readers: IMetricReader[] = [this.#prometheus];
    if (options.otlpExporter !== undefined && otlpWanted(env)) {
      this.otlpEndpoint = otlpUrl(env);
      const interval = Number(env.OTEL_METRIC_EXPORT_INTERVAL ?? OTLP_EXPORT_INTERVAL_MS_DEFAULT);
      readers.push(
        new PeriodicExportingMetricReader({
          exporter: options.otlpExporter,
          exportIntervalMillis: Number.isFinite(interval) && interval >= 100
            ? interval
            : OTLP_EXPORT_INTERVAL_MS_DEFAULT,
          metricProducers,
        }),
      );
    }
    this.#provider = new MeterProvider({ resource, readers });
    this.#register(this.#provider.getMeter("shanghai", options.version), options.events);
  }

  #histogram(name: string, description: string, unit: string, buckets: number[]): Histogram {
    return this.#histograms.create(name, description, unit, buckets);
  }

  #register(meter: Meter, events: EventBus): void {
    const on = <N extends Parameters<EventBus["on"]>[0]>(
      name: N,
      fn: Parameters<typeof events.on<N>>[1],
    ) => this.#unsubscribe.push(events.on(name, fn));

    // WAL
    const walWrite = this.#histogram(
      "shanghai_wal_write_latency",
      "Group-commit batch latency: write plus fdatasync",
      "ms",
      LATENCY_BUCKETS_MS,
    );
    const walSync = this.#histogram(
      "shanghai_wal_fsync_latency",
      "fdatasync per group-commit batch: the call itself with --wal-sync inline (the event loop stands still for it), until the event loop handles its completion with thread (then it includes shanghai_event_loop_delay)",
      "ms",
      LATENCY_BUCKETS_MS,
    );
    const batchEntries = this.#histogram(
      "shanghai_wal_batch_entries",
      "Entries per group-commit batch",
      "{entry}",
      BATCH_ENTRIES_BUCKETS,
    );
    const batchBytes = this.#histogram(
      "shanghai_wal_batch_bytes",
      "Bytes per group-commit batch",
      "By",
      BATCH_BYTES_BUCKETS,
    );
    const bytesWritten = meter.createCounter("shanghai_wal_written_bytes", {
      description: "Bytes written and fsynced to the WAL",
      unit: "By",
    });
    const entriesWritten = meter.createCounter("shanghai_wal_written_entries", {
      description: "Entries written and fsynced to the WAL",
    });
    const repairs = meter.createCounter("shanghai_wal_repairs", {
      description: "Torn tails truncated or half-created segments dropped at recovery",
    });
    const gatherWaits = meter.createCounter("shanghai_wal_gather_waits", {
      description:
        "Group-commit batches that waited for HTTP writers expected back (--wal-gather-us)",
    });
    const gatherWaitTime = meter.createCounter("shanghai_wal_gather_wait_seconds", {
      description: "Time group-commit batches waited for HTTP writers expected back",
      unit: "s",
    });
    on("wal.write.completed", (e) => {
      walWrite.record(e.durationMs);
      walSync.record(e.syncMs);
      batchEntries.record(e.entries);
      batchBytes.record(e.bytes);
      bytesWritten.add(e.bytes);
      entriesWritten.add(e.entries);
      if (e.gatherMs > 0) {
        gatherWaits.add(1);
        gatherWaitTime.add(e.gatherMs / 1000);
      }
    });
    on("wal.repaired", () => repairs.add(1));
    const preallocateFailures = meter.createCounter("shanghai_wal_preallocate_failures", {
      description: "Zero writes ahead of the WAL that failed, turning preallocation off",
    });
    on("wal.preallocate.failed", () => preallocateFailures.add(1));

    // Snapshots and retention
    const snapshotDuration = this.#histogram(
      "shanghai_snapshot_duration",
      "Time to write one snapshot of the key-value view",
      "ms",
      TASK_BUCKETS_MS,
    );
    const snapshotBytes = meter.createCounter("shanghai_snapshot_written_bytes", {
      description: "Bytes written to snapshots",
      unit: "By",
    });
    const retentionDuration = this.#histogram(
      "shanghai_retention_duration",
      "Time to apply WAL retention",
      "ms",
      TASK_BUCKETS_MS,
    );
    const retentionBytes = meter.createCounter("shanghai_retention_removed_bytes", {
      description: "WAL bytes removed by retention",
      unit: "By",
    });
    const retentionSegments = meter.createCounter("shanghai_retention_removed_segments", {
      description: "WAL segments removed by retention",
    });
    on("snapshot.completed", (e) => {
      snapshotDuration.record(e.durationMs);
      snapshotBytes.add(e.bytes);
    });
    on("retention.completed", (e) => {
      retentionDuration.record(e.durationMs);
      retentionBytes.add(e.bytesRemoved);
      retentionSegments.add(e.segmentsRemoved);
    });

    // HTTP: route is the hono route pattern (bounded), never the raw path.
    const httpDuration = this.#histogram(
      "shanghai_http_request_duration",
      "HTTP request latency by route and status",
      "ms",
      LATENCY_BUCKETS_MS,
    );
    // The request count is kept in a map of our own and observed at collection time: a
    // synchronous counter would cost the SDK another attribute hash (~1 µs) on every request.
    // Each key's histogram series holds the attribute set both report.
    const httpCounts = new Map<string, { count: number; duration: HistogramSeries }>();
    const httpRequests = meter.createObservableCounter("shanghai_http_requests", {
      description: "HTTP requests by method, route and status",
    });
    httpRequests.addCallback((result) => {
      for (const { count, duration } of httpCounts.values()) {
        result.observe(count, duration.attributes);
      }
    });
    on("http.request.completed", (e) => {
      const key = `${e.method} ${e.status} ${e.route}`;
      let entry = httpCounts.get(key);
      if (entry === undefined) {
        if (httpCounts.size >= HTTP_SERIES_MAX) return; // bounded cardinality
        const duration = httpDuration.series(key, () => ({
          method: e.method,
          route: e.route,
          status: String(e.status),
        }));
        httpCounts.set(key, entry = { count: 0, duration });
      }
      entry.count++;
      entry.duration.record(e.durationMs);
    });

    // Cluster and replication (fed once those layers emit their events).
    const rtt = this.#histogram(
      "shanghai_cluster_heartbeat_rtt",
      "Heartbeat round-trip time",
      "ms",
      LATENCY_BUCKETS_MS,
    );
    const conflicts = meter.createCounter("shanghai_replication_conflicts", {
      description: "Concurrent writes to one key detected and resolved",
    });
    const snapshotsSent = meter.createCounter("shanghai_replication_snapshots_sent", {
      description:
        "Snapshot transfers this node began to a follower because its retained log could not serve it",
    });
    const peerRegressions = meter.createCounter("shanghai_replication_peer_regressions", {
      description:
        "Times a follower came back from a restart holding fewer entries than it had reported (a fault: its disk lost flushed writes, or a bug); this node sent it a snapshot",
    });
    const ownOriginBehind = meter.createCounter("shanghai_replication_own_origin_behind", {
      description:
        "Times a peer showed holding more of this node's own writes than this node's data directory does (rolled back, or a disk that lost flushed writes); its next writes were numbered past them",
    });
    const linksDropped = meter.createCounter("shanghai_cluster_links_dropped", {
      description:
        "Peer links dropped because nothing arrived on them for suspect-after-ms (a path losing packets); the node redials",
    });
    on(
      "cluster.heartbeat.completed",
      (e) => rtt.series(e.toNode, () => ({ to_node: e.toNode })).record(e.rttMs),
    );
    on("cluster.link.dropped", (e) => linksDropped.add(1, { to_node: e.peer }));
    on("cluster.member.changed", (e) => {
      if (e.state === "left" || e.state === "removed") {
        // A member that left the cluster leaves no series behind (bounded cardinality).
        this.peers.members.delete(e.nodeId);
        for (const map of [this.peers.lag, this.peers.credit]) {
          for (const [key, p] of map) {
            if (p.follower === e.nodeId || p.leader === e.nodeId) map.delete(key);
          }
        }
        return;
      }
      setTracked(this.peers.members, e.nodeId, e.state);
    });
    on("replication.lag.changed", (e) => setTracked(this.peers.lag, pairKey(e), { ...e }));
    on("replication.credit.changed", (e) => setTracked(this.peers.credit, pairKey(e), { ...e }));
    on("replication.conflict", () => conflicts.add(1));
    on("replication.snapshot.started", (e) => snapshotsSent.add(1, { to_node: e.follower }));
    on("replication.peer.regressed", (e) => peerRegressions.add(1, { to_node: e.follower }));
    on("replication.origin.behind", (e) => ownOriginBehind.add(1, { from_node: e.peer }));
    const applyDelay = this.#histogram(
      "shanghai_replication_apply_delay",
      "Peers' entries: from the origin's HLC wall time at the write until applied here (readable); includes clock skew between hosts",
      "ms",
      APPLY_DELAY_BUCKETS_MS,
    );
    on("replication.applied", (e) => {
      for (const delayMs of e.delaysMs) applyDelay.record(delayMs);
    });
    const ackLatency = this.#histogram(
      "shanghai_replication_ack_latency",
      "Batches of this node's entries: from sending one to a follower until its ack arrived (the follower's append, fdatasync and answer); what ack=quorum and ack=all wait for beyond this node's own sync",
      "ms",
      ACK_LATENCY_BUCKETS_MS,
    );
    on("replication.acked", (e) => {
      const series = ackLatency.series(e.follower, () => ({ to_node: e.follower }));
      for (const latencyMs of e.latenciesMs) series.record(latencyMs);
    });

    const members = meter.createObservableGauge("shanghai_cluster_members", {
      description: "Cluster members by state",
    });
    const nodesDown = meter.createObservableGauge("shanghai_cluster_nodes_down", {
      description: "Members the failure detector considers down",
    });
    members.addCallback((result) => {
      const byState = new Map<string, number>();
      for (const state of this.peers.members.values()) {
        byState.set(state, (byState.get(state) ?? 0) + 1);
      }
      for (const [state, count] of byState) result.observe(count, { state });
    });
    nodesDown.addCallback((result) => {
      let down = 0;
      for (const state of this.peers.members.values()) if (state === "down") down++;
      result.observe(down);
    });
    observePairs(meter, {
      name: "shanghai_replication_lag",
      description: "Entries a follower is behind its leader",
      pairs: this.peers.lag,
      figure: (p) => p.lag,
    });
    observePairs(meter, {
      name: "shanghai_replication_credit",
      description: "Credit (entries) a follower has granted its leader",
      pairs: this.peers.credit,
      figure: (p) => p.credit,
    });

    observeSample(meter, () => this.#sources.replication?.(), [
      {
        name: "shanghai_replication_tail_cache_bytes",
        description:
          "Newest entries held in memory for peers' streams (until every live stream acks them)",
        unit: "By",
        figure: (replication) => replication.tailCacheBytes,
      },
    ]);

    // Disk, store and process gauges, sampled when a reader collects.
    observeSample(meter, () => this.#sources.disk?.(), [
      {
        name: "shanghai_disk_usage_percent",
        description: "Used space on the data directory's file system",
        unit: "%",
        figure: (disk) => disk.usedPercent,
      },
      {
        name: "shanghai_disk_free_bytes",
        description: "Space available to the node on the data directory's file system",
        unit: "By",
        figure: (disk) => disk.availableBytes,
      },
    ]);
    observeSample(meter, () => this.#sources.store?.(), [
      {
        name: "shanghai_wal_last_lsn",
        description: "LSN of the newest durable entry",
        figure: (store) => store.lastLsn,
      },
      {
        name: "shanghai_wal_first_lsn",
        description: "LSN of the oldest entry retained",
        figure: (store) => store.firstLsn,
      },
      {
        name: "shanghai_wal_segments",
        description: "WAL segment files on disk",
        figure: (store) => store.segments,
      },
      {
        name: "shanghai_wal_disk_bytes",
        description: "Bytes of WAL on disk",
        unit: "By",
        figure: (store) => store.walBytes,
      },
      {
        name: "shanghai_kv_keys",
        description: "Live keys in the key-value view (tombstones not included)",
        figure: (store) => store.keys,
      },
      {
        name: "shanghai_kv_tombstones",
        description: "Deleted keys kept as tombstones until every member holds the delete",
        figure: (store) => store.tombstones,
      },
      {
        name: "shanghai_kv_shared_buffer_bytes",
        description:
          "Replication payloads the key-value view keeps because values are views into them",
        unit: "By",
        figure: (store) => store.sharedBufferBytes ?? 0,
      },
      {
        name: "shanghai_kv_shared_buffer_live_bytes",
        description: "Bytes of those payloads that are live values (at least half, but for one)",
        unit: "By",
        figure: (store) => store.sharedBufferLiveBytes ?? 0,
      },
    ]);
    const loopDelay = this.#histogram(
      "shanghai_event_loop_delay",
      "How late a repeating timer fires: every latency taken in JavaScript (fsync, HTTP) includes it",
      "ms",
      LATENCY_BUCKETS_MS,
    );
    on("process.loop.delay", (e) => loopDelay.record(e.delayMs));

    // Process memory: what a stalled follower or a large key-value view costs shows here.
    observeSample(meter, this.#sources.memory ?? (() => Deno.memoryUsage()), [
      {
        name: "shanghai_process_resident_memory_bytes",
        description: "Resident set size of the node's process",
        unit: "By",
        figure: (usage) => usage.rss,
      },
      {
        name: "shanghai_process_heap_used_bytes",
        description: "JavaScript heap in use (live objects and garbage not yet collected)",
        unit: "By",
        figure: (usage) => usage.heapUsed,
      },
      {
        name: "shanghai_process_heap_total_bytes",
        description: "JavaScript heap reserved",
        unit: "By",
        figure: (usage) => usage.heapTotal,
      },
      {
        name: "shanghai_process_external_memory_bytes",
        description: "Memory outside the JavaScript heap held by its objects (byte buffers)",
        unit: "By",
        figure: (usage) => usage.external,
      },
    ]);

    // Slabs values are read into, by whether a helper thread had touched their pages
    // (src/common/prefaulted_slabs.ts): fresh ones cost the event loop a fault per 4 KiB.
    const slabsTaken = meter.createObservableCounter("shanghai_memory_slabs", {
      description:
        "Slabs taken for incoming values, by kind and by whether their pages were prefaulted",
    });
    const slabsReady = meter.createObservableGauge("shanghai_memory_slabs_ready", {
      description: "Prefaulted slabs waiting to be taken, by kind",
    });
    const slabStats = this.#sources.slabs ?? prefaultStats;
    slabsTaken.addCallback((result) => {
      for (const [kind, stats] of Object.entries(slabStats())) {
        result.observe(stats.prefaulted, { kind, source: "prefaulted" });
        result.observe(stats.fresh, { kind, source: "fresh" });
      }
    });
    slabsReady.addCallback((result) => {
      for (const [kind, stats] of Object.entries(slabStats())) {
        result.observe(stats.ready, { kind });
      }
    });
  }

  /** Largest replication lag any follower reports, and whose it is. */
  maxLag(): { lag: number; follower: string; leader: string } | undefined {
    let worst: { lag: number; follower: string; leader: string } | undefined;
    for (const p of this.peers.lag.values()) if (!worst || p.lag > worst.lag) worst = p;
    return worst;
  }

  /** Prometheus text exposition (format 0.0.4) of every instrument. */
  async prometheus(): Promise<string> {
    const { resourceMetrics } = await this.#prometheus.collect();
    return this.#serializer.serialize(resourceMetrics);
  }

  /** Pushes pending OTLP data now (tests and shutdown). */
  async flush(): Promise<void> {
    await this.#provider.forceFlush();
  }

  /** Unsubscribes from the bus, pushes what is pending, and stops the readers. */
  async shutdown(): Promise<void> {
    for (const off of this.#unsubscribe.splice(0)) off();
    await this.#provider.shutdown().catch(() => {});
  }
}
