/**
 * `shanghai metrics [--addr host:port] [--json | --prometheus]`: a running node's metrics as a
 * human summary with seed 002's alert thresholds, as JSON, or as the raw Prometheus text.
 *
 * @module
 */
import { parseClientArgs, resolveAddr } from "./client.ts";
import { EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE } from "./exit_codes.ts";
import { CliError, type CliIo, formatBytes, table } from "./io.ts";

export const METRICS_HELP = `Usage: shanghai metrics [--addr host:port] [--json | --prometheus]

Shows a running node's metrics: WAL latency and throughput, HTTP traffic, event-loop delay, disk,
snapshots, cluster members and replication lag, each checked against its alert threshold.

Options:
  --addr host:port   Node's HTTP address [default: $SHANGHAI_ADDR or 127.0.0.1:9090]
  --json             Print the summary as JSON
  --prometheus       Print the raw Prometheus text of GET /metrics
  -h, --help         Show this help

Exit codes: 0 ok, 1 the node answered with an error, 2 bad usage, 3 node unreachable.`;

/** Alert thresholds from the operations guide (seed 002). */
export const ALERT_THRESHOLDS = {
  walWriteLatencyP99Ms: 50,
  replicationLagEntries: 10_000,
  clusterNodesDown: 0,
  diskUsagePercent: 85,
  /** Followers that came back holding less than they had reported, since this node started. */
  peerRegressions: 0,
  /** Peers that held more of this node's own writes than its data directory, since it started. */
  ownOriginBehind: 0,
} as const;

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text exposition into samples (comments and blank lines skipped). */
export function parsePrometheus(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    for (const m of (match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[m[1]] = m[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    const value = match[3] === "+Inf"
      ? Infinity
      : match[3] === "-Inf"
      ? -Infinity
      : Number(match[3]);
    out.push({ name: match[1], labels, value });
  }
  return out;
}

/** The values of every sample named `name` (whose labels pass `filter`), added up. */
export function sum(
  samples: Sample[],
  name: string,
  filter: (l: Record<string, string>) => boolean = () => true,
): number {
  return samples.filter((s) => s.name === name && filter(s.labels)).reduce(
    (a, s) => a + s.value,
    0,
  );
}

function gauge(samples: Sample[], name: string): number | null {
  const s = samples.find((x) => x.name === name);
  return s ? s.value : null;
}

/** Upper bound of the bucket holding quantile `q` of a histogram (summed over its series). */
export function histogramQuantile(samples: Sample[], name: string, q: number): number | null {
  const buckets = new Map<number, number>();
  for (const s of samples) {
    if (s.name !== `${name}_bucket`) continue;
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    buckets.set(le, (buckets.get(le) ?? 0) + s.value);
  }
  const sorted = [...buckets.entries()].sort((a, b) => a[0] - b[0]);
  const total = sorted.length > 0 ? sorted[sorted.length - 1][1] : 0;
  if (total === 0) return null;
  for (const [le, count] of sorted) if (count >= q * total) return le;
  return Infinity;
}

export interface MetricsSummary {
  wal: {
    batches: number;
    entriesWritten: number;
    bytesWritten: number;
    meanBatchEntries: number | null;
    writeLatencyP50Ms: number | null;
    writeLatencyP99Ms: number | null;
    fsyncLatencyP99Ms: number | null;
    lastLsn: number | null;
    segments: number | null;
  };
  http: { requests: number; errors5xx: number; errors4xx: number; latencyP99Ms: number | null };
  /** How late the node's timers fire: every latency above includes it. */
  eventLoop: { delayP99Ms: number | null };
  disk: { usagePercent: number | null; freeBytes: number | null };
  snapshots: { count: number; meanDurationMs: number | null };
  cluster: { membersByState: Record<string, number>; nodesDown: number | null };
  replication: {
    lag: { follower: string; leader: string; lag: number }[];
    maxLag: number | null;
    conflicts: number;
    /** Followers that came back from a restart holding less than they had reported. */
    peerRegressions: number;
    ownOriginBehind: number;
  };
  alerts: { metric: string; value: number | null; threshold: string; firing: boolean }[];
}

export function summarize(samples: Sample[]): MetricsSummary {
  const batches = sum(samples, "shanghai_wal_write_latency_count");
  const batchEntriesSum = sum(samples, "shanghai_wal_batch_entries_sum");
  const snapshots = sum(samples, "shanghai_snapshot_duration_count");
  const lag = samples.filter((s) => s.name === "shanghai_replication_lag")
    .map((s) => ({
      follower: s.labels.follower ?? "",
      leader: s.labels.leader ?? "",
      lag: s.value,
    }));
  const membersByState: Record<string, number> = {};
  for (const s of samples.filter((x) => x.name === "shanghai_cluster_members")) {
    membersByState[s.labels.state ?? "?"] = s.value;
  }
  const summary: MetricsSummary = {
    wal: {
      batches,
      entriesWritten: sum(samples, "shanghai_wal_written_entries_total"),
      bytesWritten: sum(samples, "shanghai_wal_written_bytes_total"),
      meanBatchEntries: batches > 0 ? Math.round((batchEntriesSum / batches) * 10) / 10 : null,
      writeLatencyP50Ms: histogramQuantile(samples, "shanghai_wal_write_latency", 0.5),
      writeLatencyP99Ms: histogramQuantile(samples, "shanghai_wal_write_latency", 0.99),
      fsyncLatencyP99Ms: histogramQuantile(samples, "shanghai_wal_fsync_latency", 0.99),
      lastLsn: gauge(samples, "shanghai_wal_last_lsn"),
      segments: gauge(samples, "shanghai_wal_segments"),
    },
    http: {
      requests: sum(samples, "shanghai_http_requests_total"),
      errors5xx: sum(
        samples,
        "shanghai_http_requests_total",
        (l) => (l.status ?? "").startsWith("5"),
      ),
      errors4xx: sum(
        samples,
        "shanghai_http_requests_total",
        (l) => (l.status ?? "").startsWith("4"),
      ),
      latencyP99Ms: histogramQuantile(samples, "shanghai_http_request_duration", 0.99),
    },
    eventLoop: { delayP99Ms: histogramQuantile(samples, "shanghai_event_loop_delay", 0.99) },
    disk: {
      usagePercent: gauge(samples, "shanghai_disk_usage_percent"),
      freeBytes: gauge(samples, "shanghai_disk_free_bytes"),
    },
    snapshots: {
      count: snapshots,
      meanDurationMs: snapshots > 0
        ? Math.round(sum(samples, "shanghai_snapshot_duration_sum") / snapshots)
        : null,
    },
    cluster: { membersByState, nodesDown: gauge(samples, "shanghai_cluster_nodes_down") },
    replication: {
      lag,
      maxLag: lag.length > 0 ? Math.max(...lag.map((l) => l.lag)) : null,
      conflicts: sum(samples, "shanghai_replication_conflicts_total"),
      peerRegressions: sum(samples, "shanghai_replication_peer_regressions_total"),
      ownOriginBehind: sum(samples, "shanghai_replication_own_origin_behind_total"),
    },
    alerts: [],
  };
  const t = ALERT_THRESHOLDS;
  const alert = (metric: string, value: number | null, limit: number, unit: string) =>
    summary.alerts.push({
      metric,
      value,
      threshold: `> ${limit}${unit}`,
      firing: value !== null && value > limit,
    });
  alert(
    "shanghai_wal_write_latency_p99",
    summary.wal.writeLatencyP99Ms,
    t.walWriteLatencyP99Ms,
    " ms",
  );
  alert(
    "shanghai_replication_lag",
    summary.replication.maxLag,
    t.replicationLagEntries,
    " entries",
  );
  alert("shanghai_cluster_nodes_down", summary.cluster.nodesDown, t.clusterNodesDown, "");
  alert("shanghai_disk_usage_percent", summary.disk.usagePercent, t.diskUsagePercent, "%");
  alert(
    "shanghai_replication_peer_regressions_total",
    summary.replication.peerRegressions,
    t.peerRegressions,
    "",
  );
  alert(
    "shanghai_replication_own_origin_behind_total",
    summary.replication.ownOriginBehind,
    t.ownOriginBehind,
    "",
  );
  return summary;
}

function ms(value: number | null): string {
  if (value === null) return "-";
  return value === Infinity ? "> 10 s" : `<= ${value} ms`;
}

export function formatSummary(s: MetricsSummary): string {
  const lines = [
    "Shanghai Node Metrics",
    "========================================",
    `WAL:          ${s.wal.entriesWritten} entries, ${
      formatBytes(s.wal.bytesWritten)
    } in ${s.wal.batches} batches ` +
    `(mean ${s.wal.meanBatchEntries ?? "-"} entries/batch); last LSN ${s.wal.lastLsn ?? "-"}, ${
      s.wal.segments ?? "-"
    } segments`,
    `WAL latency:  write p50 ${ms(s.wal.writeLatencyP50Ms)}, p99 ${
      ms(s.wal.writeLatencyP99Ms)
    }; fsync p99 ${ms(s.wal.fsyncLatencyP99Ms)}`,
    `HTTP:         ${s.http.requests} requests (${s.http.errors4xx} 4xx, ${s.http.errors5xx} 5xx), p99 ${
      ms(s.http.latencyP99Ms)
    }`,
    `Event loop:   delay p99 ${ms(s.eventLoop.delayP99Ms)}`,
    `Disk:         ${s.disk.usagePercent ?? "-"}% used, ${
      s.disk.freeBytes === null ? "-" : formatBytes(s.disk.freeBytes)
    } free`,
    `Snapshots:    ${s.snapshots.count} (mean ${s.snapshots.meanDurationMs ?? "-"} ms)`,
    `Cluster:      ${
      Object.keys(s.cluster.membersByState).length === 0
        ? "no membership reported"
        : Object.entries(s.cluster.membersByState).map(([k, v]) => `${v} ${k}`).join(", ")
    }`,
    `Replication:  ${
      s.replication.lag.length === 0 ? "no peers reported" : `max lag ${s.replication.maxLag}`
    }, ${s.replication.conflicts} conflicts`,
  ];
  if (s.replication.lag.length > 0) {
    lines.push(
      "",
      table(
        ["FOLLOWER", "LEADER", "LAG"],
        s.replication.lag.map((l) => [l.follower, l.leader, l.lag]),
      ),
    );
  }
  lines.push(
    "",
    table(
      ["ALERT", "VALUE", "THRESHOLD", "STATE"],
      s.alerts.map((
        a,
      ) => [
        a.metric,
        a.value === null ? "-" : String(a.value),
        a.threshold,
        a.firing ? "FIRING" : "ok",
      ]),
    ),
  );
  return lines.join("\n");
}

export async function metrics(args: string[], io: CliIo): Promise<number> {
  const values = parseClientArgs("metrics", args, METRICS_HELP, io, ["prometheus"]);
  if (!values) return EXIT_OK;
  if (values.json && values.prometheus) {
    throw new CliError("Give --json or --prometheus, not both", EXIT_USAGE);
  }
  const addr = resolveAddr(values.addr, io);
  let response: Response;
  try {
    response = await fetch(`http://${addr}/metrics`, { signal: AbortSignal.timeout(10_000) });
  } catch (error) {
    throw new CliError(
      `Cannot reach node at ${addr}: ${(error as Error).message}`,
      EXIT_UNREACHABLE,
    );
  }
  const text = await response.text();
  if (!response.ok) {
    let message = text.slice(0, 200);
    try {
      message = JSON.parse(text).error?.message ?? message;
    } catch { /* not JSON */ }
    throw new CliError(`Node at ${addr} answered ${response.status}: ${message}`, EXIT_FAILED);
  }
  if (values.prometheus) {
    io.out(text);
    return EXIT_OK;
  }
  const summary = summarize(parsePrometheus(text));
  io.out(values.json ? JSON.stringify(summary, null, 2) : formatSummary(summary));
  return EXIT_OK;
}
