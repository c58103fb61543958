/**
 * Online backup, verify and restore.
 *
 * A running node serves consistent cuts of its data directory (`BackupSessions`, mounted by
 * `backupRoutes`); `runBackup` copies one into a timestamped folder with a manifest of SHA-256
 * sums; `verifyBackups` re-checks them; `runRestore` rebuilds a data directory, optionally cut at
 * an LSN or a time. See docs/OPERATIONS.md "Backup and recovery".
 *
 * ```ts ignore
 * import { runBackup, runRestore, verifyBackups } from "./mod.ts";
 * const backup = await runBackup({ addr: "127.0.0.1:9090", toDir: "/backups", keep: 7 });
 * const [result] = await verifyBackups(backup.path);
 * if (result.ok) await runRestore({ from: backup.path, dataDir: "/var/lib/shanghai.new" });
 * ```
 *
 * @module
 */
export {
  acquireLock,
  BackupLockedError,
  type BackupOptions,
  backupsToPrune,
  type BackupSummary,
  BackupTransferError,
  runBackup,
} from "./backup.ts";
export {
  BackupIntegrityError,
  type BackupManifest,
  backupName,
  isSafeBackupPath,
  listBackups,
  MANIFEST_FILE,
  type ManifestFile,
  parseManifest,
  readManifest,
  sealManifest,
} from "./manifest.ts";
export {
  resolveChain,
  RestoreCutUnavailableError,
  type RestoreOptions,
  RestoreRefusedError,
  type RestoreSummary,
  runRestore,
} from "./restore.ts";
export {
  type BackupFileInfo,
  type BackupSessionInfo,
  BackupSessions,
  type BackupSource,
} from "./session.ts";
export { backupRoutes } from "./admin_routes.ts";
export { verifyBackup, verifyBackups, type VerifyResult } from "./verify.ts";
