/**
 * The backup manifest: what one backup folder holds and how to check it.
 *
 * A backup folder is `<DIR>/<YYYYMMDDTHHMMSSmmmZ>/` with `manifest.json` and the files it
 * lists (`node.json`, `snapshots/<lsn>.snap`, `wal/<lsn>.wal`). The manifest is written last and
 * the folder is renamed into place after it, so a folder without a manifest (or still under its
 * `.tmp-` name) is never a backup. The manifest carries its own SHA-256 over its other fields,
 * so an edit to it is caught like an edit to a file.
 *
 * Paths are checked against a closed list of shapes, never joined blindly: a manifest that
 * names `../x` or `/etc/x` is refused before anything is read or written.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { ShanghaiError } from "../common/errors.ts";
import { BACKUP_CHUNK_BYTES, BACKUP_MANIFEST_BYTES_MAX } from "../common/limits.ts";
import type { BackupFileInfo } from "./session.ts";

export const MANIFEST_FILE = "manifest.json";
export const MANIFEST_FORMAT = 1;
/** Backup folder names: UTC time to the millisecond, sortable, with a suffix on a clash. */
export const BACKUP_NAME_PATTERN = /^\d{8}T\d{9}Z(-\d{1,4})?$/;
/** The only shapes of path a backup may hold. */
const SAFE_PATH_PATTERN = /^(node\.json|snapshots\/\d{20}\.snap|wal\/\d{20}\.wal)$/;

export interface ManifestFile extends BackupFileInfo {
  sha256: string;
}

export interface BackupManifest {
  format: 1;
  kind: "full" | "incremental";
  createdMs: number;
  nodeId: string;
  clusterId: string;
  /** The origin the node wrote under (absent from backups made before origins had tags). */
  origin?: string;
  /** Folder name (in the same parent) of the backup this incremental one builds on. */
  base: string | null;
  /** LSNs this backup adds (1 for a full backup) up to the cut. */
  firstLsn: number;
  lastLsn: number;
  /**
   * The entry at `lastLsn` (origin, sequence, HLC), when the WAL held it at the cut: the next
   * incremental checks that the node's log still holds that entry there. Absent from backups
   * made before session 39, and when `lastLsn` was covered only by a snapshot.
   */
  lastEntry?: EntryId;
  snapshotLsn: number | null;
  /** Where it was taken from (host:port). */
  source: string;
  files: ManifestFile[];
  /** SHA-256 of the manifest's other fields (canonical JSON); written last. */
  checksum: string;
}

/**
 * Which entry an LSN held: its origin, its sequence number there and its HLC. The HLC tells
 * apart two entries of one origin with the same sequence number, which a node that lost
 * records and kept its origin (one that never shipped unsynced entries) writes.
 */
export interface EntryId {
  origin: string;
  seq: number;
  hlc: number;
}

/** Whether `value` is an {@link EntryId}. */
export function isEntryId(value: unknown): value is EntryId {
  const id = value as EntryId;
  return typeof id === "object" && id !== null && typeof id.origin === "string" &&
    id.origin.length > 0 && Number.isSafeInteger(id.seq) && id.seq >= 1 &&
    Number.isSafeInteger(id.hlc) && id.hlc >= 0;
}

/** A backup, a manifest or a file in one that fails its checks. */
export class BackupIntegrityError extends ShanghaiError {
  override name = "BackupIntegrityError";
  constructor(message: string) {
    super("corrupt", message);
  }
}

/** Formats a backup folder name for `ms` (UTC). */
export function backupName(ms: number): string {
  const iso = new Date(ms).toISOString(); // 2026-11-22T00:06:16.094Z
  return `${iso.slice(0, 10).replaceAll("-", "")}T${
    iso.slice(11, 23).replaceAll(":", "").replace(".", "")
  }Z`;
}

/** True when `path` is one of the shapes a data directory holds (and so cannot escape it). */
export function isSafeBackupPath(path: string): boolean {
  return SAFE_PATH_PATTERN.test(path);
}

function canonical(manifest: Omit<BackupManifest, "checksum">): string {
  const { checksum: _ignored, ...rest } = manifest as BackupManifest;
  return JSON.stringify(rest);
}

export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Seals a manifest: fills in its checksum. */
export function sealManifest(manifest: Omit<BackupManifest, "checksum">): BackupManifest {
  return { ...manifest, checksum: sha256Hex(canonical(manifest)) };
}

/** Parses and checks a manifest's shape, checksum and paths (not the files it lists). */
export function parseManifest(text: string, where: string): BackupManifest {
  let parsed: BackupManifest;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new BackupIntegrityError(
      `Cannot read manifest ${where}: not JSON (${(error as Error).message})`,
    );
  }
  if (
    typeof parsed !== "object" || parsed === null || parsed.format !== MANIFEST_FORMAT ||
    !Array.isArray(parsed.files)
  ) {
    throw new BackupIntegrityError(
      `Cannot read manifest ${where}: not a format ${MANIFEST_FORMAT} backup manifest`,
    );
  }
  if (typeof parsed.checksum !== "string" || sha256Hex(canonical(parsed)) !== parsed.checksum) {
    throw new BackupIntegrityError(
      `Cannot trust manifest ${where}: its checksum does not match its content (edited or damaged)`,
    );
  }
  for (const file of parsed.files) {
    if (typeof file?.path !== "string" || !isSafeBackupPath(file.path)) {
      throw new BackupIntegrityError(
        `Cannot trust manifest ${where}: path ${
          JSON.stringify(file?.path)
        } is not a data directory file and could escape the target`,
      );
    }
    if (
      !Number.isSafeInteger(file.bytes) || file.bytes < 0 ||
      !/^[0-9a-f]{64}$/.test(String(file.sha256))
    ) {
      throw new BackupIntegrityError(
        `Cannot trust manifest ${where}: entry for ${file.path} has a bad size or checksum`,
      );
    }
  }
  if (parsed.lastEntry !== undefined && !isEntryId(parsed.lastEntry)) {
    throw new BackupIntegrityError(
      `Cannot trust manifest ${where}: lastEntry ${
        JSON.stringify(parsed.lastEntry)
      } is not an origin, a sequence number and an HLC`,
    );
  }
  if (
    parsed.base !== null &&
    !(typeof parsed.base === "string" && BACKUP_NAME_PATTERN.test(parsed.base))
  ) {
    throw new BackupIntegrityError(
      `Cannot trust manifest ${where}: base ${JSON.stringify(parsed.base)} is not a backup name`,
    );
  }
  return parsed;
}

/** Reads and checks `<dir>/manifest.json`. */
export async function readManifest(dir: string): Promise<BackupManifest> {
  const path = `${dir}/${MANIFEST_FILE}`;
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new BackupIntegrityError(`Cannot read backup ${dir}: it has no ${MANIFEST_FILE}`);
    }
    throw error;
  }
  if (stat.size > BACKUP_MANIFEST_BYTES_MAX) {
    throw new BackupIntegrityError(
      `Cannot read manifest ${path}: ${stat.size} bytes is over ${BACKUP_MANIFEST_BYTES_MAX}`,
    );
  }
  return parseManifest(await Deno.readTextFile(path), path);
}

/** SHA-256 and size of a file, read in chunks. */
export async function hashFile(path: string): Promise<{ sha256: string; bytes: number }> {
  const file = await Deno.open(path, { read: true });
  try {
    const hash = createHash("sha256");
    const buffer = new Uint8Array(BACKUP_CHUNK_BYTES);
    let bytes = 0;
    while (true) {
      const n = await file.read(buffer);
      if (n === null) break;
      hash.update(buffer.subarray(0, n));
      bytes += n;
    }
    return { sha256: hash.digest("hex"), bytes };
  } finally {
    file.close();
  }
}

/** Checks one file of a backup against its manifest entry; returns the problem, if any. */
export async function checkFile(dir: string, file: ManifestFile): Promise<string | undefined> {
  let actual: { sha256: string; bytes: number };
  try {
    actual = await hashFile(`${dir}/${file.path}`);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return `${file.path} is missing`;
    return `${file.path} cannot be read: ${(error as Error).message}`;
  }
  if (actual.bytes !== file.bytes) {
    return `${file.path} has ${actual.bytes} bytes, the manifest says ${file.bytes}`;
  }
  if (actual.sha256 !== file.sha256) {
    return `${file.path} does not match its SHA-256 (tampered or damaged)`;
  }
  return undefined;
}

/** Backup folders in `dir` (complete ones: a valid name and a manifest), oldest first. */
export async function listBackups(dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const item of Deno.readDir(dir)) {
      if (!item.isDirectory || !BACKUP_NAME_PATTERN.test(item.name)) continue;
      try {
        await Deno.stat(`${dir}/${item.name}/${MANIFEST_FILE}`);
        out.push(item.name);
      } catch { /* no manifest: not a backup */ }
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return out.sort();
}
