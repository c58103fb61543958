/**
 * Node configuration: one table of settings, read from flags, then SHANGHAI_* environment
 * variables, then a JSON config file, then the defaults here; validated before anything starts,
 * with errors that name the setting and where its value came from.
 *
 * To add a setting, add a row to SETTINGS and a field to NodeConfig; the CLI flags, environment
 * variables, config file keys and `serve --help` all come from the table.
 *
 * @module
 */
import { ConfigError } from "../common/errors.ts";
import { parseSeed } from "../cluster/seeds.ts";
import { isNodeId } from "../common/origin.ts";
import {
  ACK_TIMEOUT_MS_DEFAULT,
  ACK_TIMEOUT_MS_MAX,
  BATCH_BYTES_DEFAULT,
  BATCH_ENTRIES_DEFAULT,
  BATCH_ENTRIES_MAX,
  BATCH_ENTRIES_REPLICATED_DEFAULT,
  DOWN_AFTER_MS_DEFAULT,
  GiB,
  HEARTBEAT_INTERVAL_MS_DEFAULT,
  IDLE_POLL_MICROS_DEFAULT,
  IDLE_POLL_MICROS_MAX,
  IDLE_POLL_MICROS_SUGGESTED,
  MiB,
  MIN_FREE_DISK_BYTES_DEFAULT,
  PREFAULT_SLABS_DEFAULT,
  PREFAULT_SLABS_MAX,
  READY_LAG_MAX_DEFAULT,
  RECORD_HEADER_BYTES,
  REPL_BATCH_BYTES_DEFAULT,
  REPL_BATCH_BYTES_MAX,
  REPL_BATCH_ENTRIES_DEFAULT,
  REPL_CREDIT_ENTRIES_DEFAULT,
  REPL_CREDIT_ENTRIES_MAX,
  RETAIN_BYTES_DEFAULT,
  SEGMENT_BYTES_DEFAULT,
  SEGMENT_BYTES_MAX,
  SEGMENT_BYTES_MIN,
  SNAPSHOT_EVERY_BYTES_DEFAULT,
  SNAPSHOT_WAL_PERCENT_DEFAULT,
  SNAPSHOT_WAL_PERCENT_MAX,
  SUSPECT_AFTER_MS_DEFAULT,
  TOMBSTONE_GRACE_MS_DEFAULT,
  TOMBSTONE_GRACE_MS_MAX,
  TOMBSTONE_SWEEP_MS_DEFAULT,
  TOMBSTONE_SWEEP_MS_MAX,
  TOMBSTONE_SWEEP_MS_MIN,
  VALUE_BYTES_DEFAULT,
  VALUE_BYTES_MAX,
  WAL_DROP_BEHIND_BYTES_DEFAULT,
  WAL_DROP_BEHIND_BYTES_MAX,
  WAL_GATHER_BATCH_ENTRIES,
  WAL_GATHER_MICROS_DEFAULT,
  WAL_GATHER_MICROS_MAX,
  WAL_PREALLOCATE_BYTES_DEFAULT,
  WAL_PREALLOCATE_BYTES_MAX,
} from "../common/limits.ts";

export interface NodeConfig {
  nodeId?: string;
  host: string;
  port: number;
  adminPort: number;
  dataDir: string;
  walDir?: string;
  join: string[];
  valueBytesMax: number;
  segmentBytes: number;
  batchEntriesMax: number;
  batchEntriesMaxReplicated: number;
  batchBytesMax: number;
  walPreallocateBytes: number;
  /** Longest wait of a short batch for HTTP writers answered a moment ago, µs (0: never). */
  walGatherMicros: number;
  /** Synced WAL bytes left in the OS page cache behind the newest record (0: all of them). */
  walDropBehindBytes: number;
  /** Where the WAL's fdatasync runs: on the JavaScript thread, or on a blocking-task thread. */
  walSync: "inline" | "thread";
  /** How long after its last request or WAL sync the idle poller keeps spinning, µs (0: off). */
  idlePollMicros: number;
  prefaultSlabs: number;
  snapshotEveryBytes: number;
  snapshotWalPercent: number;
  retainBytes: number;
  logLevel: "debug" | "info" | "warn" | "error";
  logFormat: "json" | "text";
  /** Replication: default write ack level, its timeout, the credit window and batch bounds. */
  ackDefault: "one" | "quorum" | "all";
  ackTimeoutMs: number;
  replCreditEntries: number;
  replBatchEntries: number;
  replBatchBytes: number;
  /** Tombstone collection: the grace past every member's clock, and how often sweeps run. */
  tombstoneGraceMs: number;
  tombstoneSweepMs: number;
  readyLagMax: number;
  minFreeDiskBytes: number;
  metrics: "on" | "off";
  heartbeatIntervalMs: number;
  suspectAfterMs: number;
  downAfterMs: number;
  failureDetector: "swim" | "phi";
}

type Kind = "string" | "int" | "list" | "enum";

export interface SettingSpec {
  key: keyof NodeConfig;
  flag: string;
  env?: string;
  kind: Kind;
  default?: string | number | string[];
  min?: number;
  max?: number;
  values?: readonly string[];
  help: string;
}

export const SETTINGS: readonly SettingSpec[] = [
  {
    key: "nodeId",
    flag: "node-id",
    env: "SHANGHAI_NODE_ID",
    kind: "string",
    help: "Stable node id (default: the one stored in the data directory, else generated)",
  },
  {
    key: "host",
    flag: "host",
    env: "SHANGHAI_HOST",
    kind: "string",
    default: "127.0.0.1",
    help: "Address to listen on and advertise",
  },
  {
    key: "port",
    flag: "port",
    env: "SHANGHAI_PORT",
    kind: "int",
    default: 4000,
    min: 0,
    max: 65535,
    help: "Node-to-node TCP port (0 picks a free one)",
  },
  {
    key: "adminPort",
    flag: "admin-port",
    env: "SHANGHAI_ADMIN_PORT",
    kind: "int",
    default: 9090,
    min: 0,
    max: 65535,
    help: "HTTP port for data, admin, /metrics, /health, /ready",
  },
  {
    key: "dataDir",
    flag: "data-dir",
    env: "SHANGHAI_DATA_DIR",
    kind: "string",
    default: "./data",
    help: "Data directory (identity, snapshots, and the WAL unless --wal-dir)",
  },
  {
    key: "walDir",
    flag: "wal-dir",
    env: "SHANGHAI_WAL_DIR",
    kind: "string",
    help: "WAL directory (default: <data-dir>/wal)",
  },
  {
    key: "join",
    flag: "join",
    env: "SHANGHAI_CLUSTER_NODES",
    kind: "list",
    default: [],
    help: "Seed members to join: host:port, id@host:port or id@host (port 4000), comma-separated",
  },
  {
    key: "valueBytesMax",
    flag: "value-bytes-max",
    env: "SHANGHAI_VALUE_BYTES_MAX",
    kind: "int",
    default: VALUE_BYTES_DEFAULT,
    min: 1,
    max: VALUE_BYTES_MAX,
    help: "Largest value or log entry accepted, in bytes",
  },
  {
    key: "segmentBytes",
    flag: "segment-bytes",
    env: "SHANGHAI_SEGMENT_BYTES",
    kind: "int",
    default: SEGMENT_BYTES_DEFAULT,
    min: SEGMENT_BYTES_MIN,
    max: SEGMENT_BYTES_MAX,
    help: "WAL segment size before rotation",
  },
  {
    key: "batchEntriesMax",
    flag: "batch-entries-max",
    env: "SHANGHAI_BATCH_ENTRIES_MAX",
    kind: "int",
    default: BATCH_ENTRIES_DEFAULT,
    min: 1,
    max: BATCH_ENTRIES_MAX,
    help: "Most entries in one group commit",
  },
  {
    key: "batchEntriesMaxReplicated",
    flag: "batch-entries-max-replicated",
    env: "SHANGHAI_BATCH_ENTRIES_MAX_REPLICATED",
    kind: "int",
    default: BATCH_ENTRIES_REPLICATED_DEFAULT,
    min: 1,
    max: BATCH_ENTRIES_MAX,
    help:
      "Most entries in one group commit that peers' entries fill (never below batch-entries-max)",
  },
  {
    key: "batchBytesMax",
    flag: "batch-bytes-max",
    env: "SHANGHAI_BATCH_BYTES_MAX",
    kind: "int",
    default: BATCH_BYTES_DEFAULT,
    min: 64 * 1024,
    max: 64 * MiB,
    help: "Most bytes in one group commit",
  },
  {
    key: "walPreallocateBytes",
    flag: "wal-preallocate-bytes",
    env: "SHANGHAI_WAL_PREALLOCATE_BYTES",
    kind: "int",
    default: WAL_PREALLOCATE_BYTES_DEFAULT,
    min: 0,
    max: WAL_PREALLOCATE_BYTES_MAX,
    help: "Zeros laid out ahead of the WAL's last record (0: off)",
  },
  {
    key: "walGatherMicros",
    flag: "wal-gather-us",
    env: "SHANGHAI_WAL_GATHER_US",
    kind: "int",
    default: WAL_GATHER_MICROS_DEFAULT,
    min: 0,
    max: WAL_GATHER_MICROS_MAX,
    help:
      `With --wal-sync inline: how long (µs) a batch of fewer than ${WAL_GATHER_BATCH_ENTRIES} writes waits for HTTP clients answered a moment ago to send their next write (0: never)`,
  },
  {
    key: "walDropBehindBytes",
    flag: "wal-drop-behind-bytes",
    env: "SHANGHAI_WAL_DROP_BEHIND_BYTES",
    kind: "int",
    default: WAL_DROP_BEHIND_BYTES_DEFAULT,
    min: 0,
    max: WAL_DROP_BEHIND_BYTES_MAX,
    help:
      "Synced WAL data further than this many bytes behind the newest record is dropped from the OS page cache, and a finished segment whole (Linux; 0: keep everything cached)",
  },
  {
    key: "walSync",
    flag: "wal-sync",
    env: "SHANGHAI_WAL_SYNC",
    kind: "enum",
    default: "inline",
    values: ["inline", "thread"],
    help:
      "Where the WAL's fdatasync runs: inline (on the event loop, fewest CPU cycles per write) or thread (the event loop keeps serving during a sync)",
  },
  {
    key: "idlePollMicros",
    flag: "idle-poll-us",
    env: "SHANGHAI_IDLE_POLL_US",
    kind: "int",
    default: IDLE_POLL_MICROS_DEFAULT,
    min: 0,
    max: IDLE_POLL_MICROS_MAX,
    help:
      `For this long (µs) after each request or WAL sync, a helper thread at idle priority keeps a core from halting, so the next request finds warm caches; it takes only CPU nothing else wants (Linux; 0: off). Off by default: measure your host before turning it on (${IDLE_POLL_MICROS_SUGGESTED} is the window that paid where it helped)`,
  },
  {
    key: "prefaultSlabs",
    flag: "prefault-slabs",
    env: "SHANGHAI_PREFAULT_SLABS",
    kind: "int",
    default: PREFAULT_SLABS_DEFAULT,
    min: 0,
    max: PREFAULT_SLABS_MAX,
    help:
      "Slabs for incoming values (request bodies, peers' frames) whose memory a helper thread maps ahead, so the event loop takes no page faults writing them; this many of each kind are kept ready (0: off)",
  },
  {
    key: "snapshotEveryBytes",
    flag: "snapshot-every-bytes",
    env: "SHANGHAI_SNAPSHOT_EVERY_BYTES",
    kind: "int",
    default: SNAPSHOT_EVERY_BYTES_DEFAULT,
    min: 0,
    max: 64 * GiB,
    help: "Snapshot after this many WAL bytes (0: only at shutdown)",
  },
  {
    key: "snapshotWalPercent",
    flag: "snapshot-wal-percent",
    env: "SHANGHAI_SNAPSHOT_WAL_PERCENT",
    kind: "int",
    default: SNAPSHOT_WAL_PERCENT_DEFAULT,
    min: 0,
    max: SNAPSHOT_WAL_PERCENT_MAX,
    help:
      "A snapshot also waits until the WAL since the last one reaches this percentage of that snapshot's size, so snapshots of a large data set write at most about as much as the WAL (0: --snapshot-every-bytes alone)",
  },
  {
    key: "retainBytes",
    flag: "retain-bytes",
    env: "SHANGHAI_RETAIN_BYTES",
    kind: "int",
    default: RETAIN_BYTES_DEFAULT,
    min: 0,
    max: 1024 * GiB,
    help: "WAL kept behind the newest snapshot for catch-up",
  },
  {
    key: "logLevel",
    flag: "log-level",
    env: "SHANGHAI_LOG_LEVEL",
    kind: "enum",
    default: "info",
    values: ["debug", "info", "warn", "error"],
    help: "Log level",
  },
  {
    key: "ackDefault",
    flag: "ack",
    env: "SHANGHAI_ACK",
    kind: "enum",
    default: "one",
    values: ["one", "quorum", "all"],
    help: "Default write ack level when a request gives no ?ack=",
  },
  {
    key: "ackTimeoutMs",
    flag: "ack-timeout-ms",
    env: "SHANGHAI_ACK_TIMEOUT_MS",
    kind: "int",
    default: ACK_TIMEOUT_MS_DEFAULT,
    min: 1,
    max: ACK_TIMEOUT_MS_MAX,
    help: "How long a write waits for ack=quorum|all (and a causal or quorum read)",
  },
  {
    key: "replCreditEntries",
    flag: "repl-credit-entries",
    env: "SHANGHAI_REPL_CREDIT_ENTRIES",
    kind: "int",
    default: REPL_CREDIT_ENTRIES_DEFAULT,
    min: 1,
    max: REPL_CREDIT_ENTRIES_MAX,
    help: "Replication credit: entries a leader may have in flight to one follower",
  },
  {
    key: "replBatchEntries",
    flag: "repl-batch-entries",
    env: "SHANGHAI_REPL_BATCH_ENTRIES",
    kind: "int",
    default: REPL_BATCH_ENTRIES_DEFAULT,
    min: 1,
    max: BATCH_ENTRIES_MAX,
    help: "Most entries in one replication batch",
  },
  {
    key: "replBatchBytes",
    flag: "repl-batch-bytes",
    env: "SHANGHAI_REPL_BATCH_BYTES",
    kind: "int",
    default: REPL_BATCH_BYTES_DEFAULT,
    min: 4096,
    max: REPL_BATCH_BYTES_MAX,
    help: "Most bytes in one replication batch",
  },
  {
    key: "tombstoneGraceMs",
    flag: "tombstone-grace-ms",
    env: "SHANGHAI_TOMBSTONE_GRACE_MS",
    kind: "int",
    default: TOMBSTONE_GRACE_MS_DEFAULT,
    min: 0,
    max: TOMBSTONE_GRACE_MS_MAX,
    help:
      "A delete's tombstone is collected once every member has it and it is this much older than every member's clock",
  },
  {
    key: "tombstoneSweepMs",
    flag: "tombstone-sweep-ms",
    env: "SHANGHAI_TOMBSTONE_SWEEP_MS",
    kind: "int",
    default: TOMBSTONE_SWEEP_MS_DEFAULT,
    min: TOMBSTONE_SWEEP_MS_MIN,
    max: TOMBSTONE_SWEEP_MS_MAX,
    help: "How often a node looks for tombstones to collect",
  },
  {
    key: "logFormat",
    flag: "log-format",
    env: "SHANGHAI_LOG_FORMAT",
    kind: "enum",
    default: "text",
    values: ["json", "text"],
    help: "Log line format",
  },
  {
    key: "heartbeatIntervalMs",
    flag: "heartbeat-interval-ms",
    env: "SHANGHAI_HEARTBEAT_INTERVAL_MS",
    kind: "int",
    default: HEARTBEAT_INTERVAL_MS_DEFAULT,
    min: 10,
    max: 600_000,
    help: "Probe every member this often",
  },
  {
    key: "suspectAfterMs",
    flag: "suspect-after-ms",
    env: "SHANGHAI_SUSPECT_AFTER_MS",
    kind: "int",
    default: SUSPECT_AFTER_MS_DEFAULT,
    min: 20,
    max: 3_600_000,
    help: "A member not heard from this long is suspect",
  },
  {
    key: "downAfterMs",
    flag: "down-after-ms",
    env: "SHANGHAI_DOWN_AFTER_MS",
    kind: "int",
    default: DOWN_AFTER_MS_DEFAULT,
    min: 30,
    max: 3_600_000,
    help: "A member not heard from this long is down",
  },
  {
    key: "failureDetector",
    flag: "failure-detector",
    env: "SHANGHAI_FAILURE_DETECTOR",
    kind: "enum",
    default: "swim",
    values: ["swim", "phi"],
    help: "swim: fixed timeouts; phi: phi accrual suspicion (down still at --down-after-ms)",
  },
  {
    key: "readyLagMax",
    flag: "ready-lag-max",
    env: "SHANGHAI_READY_LAG_MAX",
    kind: "int",
    default: READY_LAG_MAX_DEFAULT,
    min: 0,
    max: Number.MAX_SAFE_INTEGER,
    help: "/ready answers 503 while this node lags more entries than this behind a peer (0: never)",
  },
  {
    key: "minFreeDiskBytes",
    flag: "min-free-disk-bytes",
    env: "SHANGHAI_MIN_FREE_DISK_BYTES",
    kind: "int",
    default: MIN_FREE_DISK_BYTES_DEFAULT,
    min: 0,
    max: Number.MAX_SAFE_INTEGER,
    help: "/ready answers 503 while the data directory's disk has less free space (0: never)",
  },
  {
    key: "metrics",
    flag: "metrics",
    env: "SHANGHAI_METRICS",
    kind: "enum",
    default: "on",
    values: ["on", "off"],
    help: "Record OpenTelemetry metrics (/metrics, OTLP when OTEL_* is set)",
  },
];

type Raw = string | number | string[] | boolean | undefined;

function coerce(spec: SettingSpec, raw: Raw, source: string): unknown {
  const name = `${spec.flag} (from ${source})`;
  switch (spec.kind) {
    case "string": {
      if (typeof raw !== "string" || raw.trim() === "") {
        throw new ConfigError(name, "expected a non-empty string");
      }
      return raw.trim();
    }
    case "int": {
      const text = String(raw).trim();
      if (!/^\d+$/.test(text)) {
        throw new ConfigError(name, `expected a whole number, got ${JSON.stringify(raw)}`);
      }
      const value = Number(text);
      if (
        !Number.isSafeInteger(value) || value < (spec.min ?? 0) ||
        value > (spec.max ?? Number.MAX_SAFE_INTEGER)
      ) {
        throw new ConfigError(name, `${value} is outside ${spec.min ?? 0} to ${spec.max}`);
      }
      return value;
    }
    case "list": {
      const items = Array.isArray(raw) ? raw : String(raw).split(",");
      return items.map((s) => String(s).trim()).filter((s) => s.length > 0);
    }
    case "enum": {
      if (typeof raw !== "string" || !spec.values!.includes(raw)) {
        throw new ConfigError(
          name,
          `expected one of ${spec.values!.join(", ")}, got ${JSON.stringify(raw)}`,
        );
      }
      return raw;
    }
  }
}

/** Reads a JSON config file whose keys are setting names (camelCase or flag form). */
export async function readConfigFile(path: string): Promise<Record<string, Raw>> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (cause) {
    throw new ConfigError("config", `cannot read ${path}: ${(cause as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new ConfigError("config", `${path} is not valid JSON: ${(cause as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError("config", `${path} must hold a JSON object`);
  }
  const out: Record<string, Raw> = {};
  for (const [key, value] of Object.entries(parsed)) {
    const spec = SETTINGS.find((s) => s.key === key || s.flag === key);
    if (!spec) throw new ConfigError(key, `unknown setting in ${path}`);
    out[spec.key] = value as Raw;
  }
  return out;
}

/**
 * Resolves the configuration: flags win, then environment, then the config file, then the
 * defaults. Checks combinations after each value checks alone.
 */
export function resolveConfig(
  flags: Record<string, Raw>,
  env: Record<string, string | undefined>,
  file: Record<string, Raw> = {},
): NodeConfig {
  const out: Record<string, unknown> = {};
  for (const spec of SETTINGS) {
    const fromFlag = flags[spec.flag];
    const fromEnv = spec.env ? env[spec.env] : undefined;
    const fromFile = file[spec.key];
    if (fromFlag !== undefined) out[spec.key] = coerce(spec, fromFlag, `--${spec.flag}`);
    else if (fromEnv !== undefined && fromEnv !== "") {
      out[spec.key] = coerce(spec, fromEnv, spec.env!);
    } else if (fromFile !== undefined) out[spec.key] = coerce(spec, fromFile, "config file");
    else if (spec.default !== undefined) out[spec.key] = spec.default;
  }
  const config = out as unknown as NodeConfig;
  if (config.nodeId !== undefined && !isNodeId(config.nodeId)) {
    throw new ConfigError(
      "node-id",
      `${JSON.stringify(config.nodeId)} must be 1-64 letters, digits, '.', '_' or '-'`,
    );
  }
  if (config.batchBytesMax < config.valueBytesMax + RECORD_HEADER_BYTES + 4096) {
    throw new ConfigError(
      "batch-bytes-max",
      `${config.batchBytesMax} cannot hold one value of value-bytes-max ${config.valueBytesMax}; raise it or lower value-bytes-max`,
    );
  }
  if (config.segmentBytes < config.batchBytesMax + 64) {
    throw new ConfigError(
      "segment-bytes",
      `${config.segmentBytes} is smaller than batch-bytes-max ${config.batchBytesMax}`,
    );
  }
  for (const member of config.join) parseSeed(member, "join");
  if (config.suspectAfterMs <= config.heartbeatIntervalMs) {
    throw new ConfigError(
      "suspect-after-ms",
      `${config.suspectAfterMs} must be above heartbeat-interval-ms ${config.heartbeatIntervalMs}`,
    );
  }
  if (config.downAfterMs <= config.suspectAfterMs) {
    throw new ConfigError(
      "down-after-ms",
      `${config.downAfterMs} must be above suspect-after-ms ${config.suspectAfterMs}`,
    );
  }
  return config;
}

/** Parses `host:port` (IPv6 as `[::1]:4000`); a bad one is a ConfigError naming `setting`. */
export function parseHostPort(text: string, setting: string): { host: string; port: number } {
  const match = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(text.trim());
  const port = match ? Number(match[2]) : NaN;
  if (!match || port < 1 || port > 65535) {
    throw new ConfigError(setting, `${JSON.stringify(text)} is not host:port`);
  }
  return { host: match[1].replace(/^\[|\]$/g, ""), port };
}
