/**
 * Shanghai as a library: open a WAL or a key-value store in your own process, or start a
 * whole node, and subscribe to its events.
 *
 * ```ts ignore
 * import { appendEntry, Wal } from "./mod.ts";
 * const wal = await Wal.open("/tmp/my-wal");
 * const lsn = await wal.append(appendEntry(new Uint8Array([1]), { origin: "me", seq: 1 }));
 * const entries = await wal.read(lsn);
 * await wal.close();
 * ```
 *
 * @module
 */
export {
  appendEntry,
  type BatchInfo,
  type EntryInput,
  LsnCompactedError,
  type SegmentInfo,
  Wal,
  type WalOptions,
} from "./src/storage/wal/wal.ts";
export { Store, type StoreOptions, type WriteResult } from "./src/storage/kv/store.ts";
export {
  type ConflictResolver,
  type KeyRecord,
  Keyspace,
  lastWriterWins,
} from "./src/storage/kv/keyspace.ts";
export { type ApplyResult } from "./src/storage/kv/keyspace.ts";
export {
  compareVersions,
  type Entry,
  type Op,
  type Version,
  type VersionVector,
} from "./src/common/entry.ts";
export * from "./src/common/errors.ts";
export * as limits from "./src/common/limits.ts";
export { EventBus, type EventMap, type EventName } from "./src/telemetry/events.ts";
export { createLogger, type Logger } from "./src/telemetry/log.ts";
export { type NodeConfig, resolveConfig } from "./src/node/config.ts";
export { ShanghaiNode } from "./src/node/node.ts";
export {
  ACK_LEVELS,
  type AckLevel,
  type ReplicaView,
  Shipper,
  type ShipperOptions,
} from "./src/replication/shipper.ts";
export {
  type Consistency,
  type ReplicationOptions,
  ReplicationService,
} from "./src/replication/service.ts";
export {
  type CapturedSnapshot,
  type ReplicaLog,
  storeReplicaLog,
} from "./src/replication/replica_log.ts";
export { stateDigest } from "./src/replication/digest.ts";
export { decodeToken, encodeToken } from "./src/replication/causal_token.ts";
export { VERSION } from "./src/node/version.ts";
export {
  type ClusterHealth,
  type MemberInfo,
  type MembershipChange,
  type MemberState,
  onMembershipChanged,
  type PeerTransport,
} from "./src/cluster/mod.ts";
export { Metrics, type MetricsOptions, otlpMetricExporter } from "./src/telemetry/metrics.ts";
export {
  type BackupManifest,
  type BackupOptions,
  type BackupSummary,
  readManifest,
  type RestoreOptions,
  type RestoreSummary,
  runBackup,
  runRestore,
  verifyBackups,
  type VerifyResult,
} from "./src/backup/mod.ts";
