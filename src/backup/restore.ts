/**
 * Restore: rebuild a data directory from a backup (and the chain of backups an incremental one
 * builds on), optionally cut at an LSN or a point in time.
 *
 * Refusals, each before anything is written under the target's name:
 * - a target that exists and is not an empty directory;
 * - a manifest whose checksum fails, or that names a path outside the data directory shapes;
 * - a missing file, or one whose size or SHA-256 differs from the manifest;
 * - a chain with a missing base, another node or cluster, or a gap in its LSNs;
 * - a cut before the chain's snapshot (that state is not in this backup);
 * - a cut that would replay the WAL from LSN 1 past a snapshot install
 *   ({@link RestoreCutUnavailableError}, below).
 *
 * Files are copied into `<target>.restore-tmp-*` beside the target, hashed on the way, fsynced,
 * and the folder is renamed to the target at the end: a failed restore leaves no target.
 *
 * Point in time: `toLsn` keeps entries up to that LSN (the segment holding it is cut right after
 * its record, later segments are dropped). `toTimeMs` finds the first entry after the snapshot
 * whose HLC wall time is past the given time and cuts just before it.
 *
 * A cut before the snapshot replays the WAL from LSN 1 when the backup holds it. Entries a
 * snapshot install brought (replication, when retention removed the node's resume point) are
 * not in the WAL: the snapshot header's `snapshotOnly` says there are some and `installLsn`
 * where the first came in. A replay may cut only below that LSN (the state then never had
 * them); a cut from it to before the snapshot is refused with the possible cuts, never restored
 * without the installed entries. A cut at or after the snapshot always starts from it.
 *
 * @module
 */
import { pathExists, readWholeFile, syncDir, writeAll } from "../storage/durable_fs.ts";
import { createHash } from "node:crypto";
import { decodeEntry } from "../common/entry.ts";
import { ShanghaiError } from "../common/errors.ts";
import { hlcWallMs } from "../common/hlc.ts";
import { BACKUP_CHUNK_BYTES, RECORD_BYTES_MAX, SEGMENT_HEADER_BYTES } from "../common/limits.ts";
import { randomHex } from "../common/random.ts";
import { newOrigin } from "../common/origin.ts";
import { readIdentity, writeIdentity } from "../cluster/identity.ts";
import { readSnapshot, type SnapshotMeta } from "../storage/kv/snapshot.ts";
import { readRecord } from "../storage/wal/record.ts";
import { decodeSegmentHeader } from "../storage/wal/segment.ts";
import {
  BackupIntegrityError,
  type BackupManifest,
  isSafeBackupPath,
  type ManifestFile,
  readManifest,
} from "./manifest.ts";

/** The restore was refused for a reason the operator fixes (target, cut): nothing was written. */
export class RestoreRefusedError extends ShanghaiError {
  override name = "RestoreRefusedError";
  constructor(message: string) {
    super("bad_request", message);
  }
}

/**
 * A refused cut this backup cannot produce: replaying the WAL from LSN 1 to it would miss entries
 * a snapshot install brought (they are only in snapshots). The message names the possible cuts.
 */
export class RestoreCutUnavailableError extends RestoreRefusedError {
  override name = "RestoreCutUnavailableError";
}

export interface RestoreOptions {
  /** A backup folder (the newest of a chain for incrementals). */
  from: string;
  /** Target data directory: absent or empty. */
  dataDir: string;
  toLsn?: number;
  toTimeMs?: number;
}

export interface RestoreSummary {
  dataDir: string;
  nodeId: string;
  clusterId: string;
  /** Backups read, oldest first. */
  chain: string[];
  snapshotLsn: number | null;
  /** The last LSN the restored data directory holds. */
  lastLsn: number;
  files: number;
  bytes: number;
  durationMs: number;
  /** What an operator should know about the result (for example a `--to-time` past the backup). */
  notes: string[];
}

interface Source {
  dir: string;
  file: ManifestFile;
}

function parentOf(dir: string): string {
  const trimmed = dir.replace(/\/+$/, "");
  const at = trimmed.lastIndexOf("/");
  return at < 0 ? "." : at === 0 ? "/" : trimmed.slice(0, at);
}

async function isEmptyOrAbsent(path: string): Promise<boolean> {
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return true;
    throw error;
  }
  if (!stat.isDirectory) return false;
  for await (const _ of Deno.readDir(path)) return false;
  return true;
}

/** The backups from the full base to `from`, oldest first, checked as a chain. */
export async function resolveChain(
  from: string,
): Promise<{ dir: string; manifest: BackupManifest }[]> {
  const chain: { dir: string; manifest: BackupManifest }[] = [];
  let dir = from.replace(/\/+$/, "");
  const seen = new Set<string>();
  while (true) {
    if (seen.has(dir)) {
      throw new BackupIntegrityError(
        `Cannot restore from ${from}: the chain of bases loops at ${dir}`,
      );
    }
    seen.add(dir);
    let manifest: BackupManifest;
    try {
      manifest = await readManifest(dir);
    } catch (error) {
      if (
        chain.length > 0 && error instanceof BackupIntegrityError &&
        /has no manifest/.test(error.message)
      ) {
        throw new BackupIntegrityError(
          `Cannot restore from ${from}: its base backup ${dir} is missing`,
        );
      }
      throw error;
    }
    chain.unshift({ dir, manifest });
    if (manifest.base === null) break;
    dir = `${parentOf(dir)}/${manifest.base}`;
  }
  if (chain[0].manifest.kind !== "full") {
    throw new BackupIntegrityError(
      `Cannot restore from ${from}: the chain does not start with a full backup`,
    );
  }
  for (let i = 1; i < chain.length; i++) {
    const previous = chain[i - 1].manifest;
    const current = chain[i].manifest;
    if (current.nodeId !== previous.nodeId || current.clusterId !== previous.clusterId) {
      throw new BackupIntegrityError(
        `Cannot restore from ${from}: ${chain[i].dir} is of another node or cluster than its base`,
      );
    }
    if (current.firstLsn !== previous.lastLsn + 1) {
      throw new BackupIntegrityError(
        `Cannot restore from ${from}: ${
          chain[i].dir
        } starts at LSN ${current.firstLsn} but its base ends at ${previous.lastLsn}`,
      );
    }
  }
  return chain;
}

async function copyChecked(source: Source, target: string): Promise<void> {
  const path = `${source.dir}/${source.file.path}`;
  let input: Deno.FsFile;
  try {
    input = await Deno.open(path, { read: true });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new BackupIntegrityError(`Cannot restore: ${path} is missing`);
    }
    throw error;
  }
  const output = await Deno.open(target, { write: true, createNew: true });
  const hash = createHash("sha256");
  const buffer = new Uint8Array(BACKUP_CHUNK_BYTES);
  let bytes = 0;
  try {
    while (true) {
      const n = await input.read(buffer);
      if (n === null) break;
      const chunk = buffer.subarray(0, n);
      hash.update(chunk);
      await writeAll(output, chunk);
      bytes += n;
    }
    await output.sync();
  } finally {
    input.close();
    output.close();
  }
  if (bytes !== source.file.bytes) {
    throw new BackupIntegrityError(
      `Cannot restore: ${path} has ${bytes} bytes, the manifest says ${source.file.bytes}`,
    );
  }
  if (hash.digest("hex") !== source.file.sha256) {
    throw new BackupIntegrityError(
      `Cannot restore: ${path} does not match its SHA-256 (tampered or damaged)`,
    );
  }
}

/** Walks the records of a segment's bytes: calls `visit(lsn, endOffset, data)` for each. */
function walkSegment(
  bytes: Uint8Array,
  where: string,
  visit: (lsn: number, end: number, data: Uint8Array) => boolean,
): void {
  const head = decodeSegmentHeader(bytes);
  if (!head.ok) {
    throw new BackupIntegrityError(
      `Cannot restore: ${where} has a bad segment header (${head.problem})`,
    );
  }
  let lsn = head.header.firstLsn;
  let offset = SEGMENT_HEADER_BYTES;
  while (offset < bytes.length) {
    const record = readRecord(bytes, offset, RECORD_BYTES_MAX);
    if (!record.ok) {
      throw new BackupIntegrityError(
        `Cannot restore: ${where} has a ${record.problem} at byte ${offset}`,
      );
    }
    offset = record.next;
    if (!visit(lsn, offset, record.data)) return;
    lsn++;
  }
}

/** The last LSN whose entries are all at or before `timeMs`, scanning after the snapshot. */
function lsnAtTime(
  wal: Source[],
  snapshotLsn: number,
  lastLsn: number,
  timeMs: number,
): number {
  let cut = lastLsn;
  let found = false;
  for (const source of wal) {
    if ((source.file.lastLsn ?? 0) <= snapshotLsn) continue;
    const path = `${source.dir}/${source.file.path}`;
    const bytes = readWholeFile(path);
    walkSegment(bytes, path, (lsn, _end, data) => {
      if (lsn <= snapshotLsn) return true;
      if (lsn > lastLsn) return false;
      if (hlcWallMs(decodeEntry(data).hlc) > timeMs) {
        cut = lsn - 1;
        found = true;
        return false;
      }
      return true;
    });
    if (found) break;
  }
  return cut;
}

/**
 * Refuses a replay of the WAL from LSN 1 to `cut` that would miss entries a snapshot install
 * brought: they are in `meta` (the backup's snapshot) alone. A cut below the first install is
 * the WAL's state and fine; a cut at or after it is only right from the snapshot on.
 */
function refuseLostInstall(meta: SnapshotMeta, cut: number, lastLsn: number, where: string): void {
  if (Object.keys(meta.snapshotOnly ?? {}).length === 0) return;
  if (meta.installLsn !== undefined && cut < meta.installLsn) return;
  const fromSnapshot = `LSN ${meta.lsn}..${lastLsn} (from the snapshot)`;
  if (meta.installLsn === undefined) {
    throw new RestoreCutUnavailableError(
      `Cannot restore to ${where}: this backup's snapshot at LSN ${meta.lsn} holds entries a snapshot install brought that are not in the WAL, and it predates the record of the install's LSN; possible cuts: ${fromSnapshot}`,
    );
  }
  throw new RestoreCutUnavailableError(
    `Cannot restore to ${where}: entries a snapshot install at LSN ${meta.installLsn} brought are not in the WAL, and this backup's snapshot is at LSN ${meta.lsn}, so no state from the install to before the snapshot can be rebuilt; possible cuts: LSN 0..${
      meta.installLsn - 1
    } (before the install, from the WAL) or ${fromSnapshot}`,
  );
}

/** Restores `options.from` into `options.dataDir`. */
export async function runRestore(options: RestoreOptions): Promise<RestoreSummary> {
  const started = performance.now();
  if (options.toLsn !== undefined && options.toTimeMs !== undefined) {
    throw new RangeError("Cannot restore: give --to-lsn or --to-time, not both");
  }
  const target = options.dataDir.replace(/\/+$/, "");
  if (!(await isEmptyOrAbsent(target))) {
    throw new RestoreRefusedError(
      `Cannot restore into ${target}: it is not empty; restore into a new or empty directory`,
    );
  }
  const chain = await resolveChain(options.from);
  const newest = chain[chain.length - 1].manifest;
  const base = chain[0];
  const snapshot = base.manifest.files.find((f) => f.kind === "snapshot");
  let snapshotLsn = base.manifest.snapshotLsn ?? 0;
  const walByPath = new Map<string, Source>();
  let identity: Source | undefined;
  for (const { dir, manifest } of chain) {
    for (const file of manifest.files) {
      if (!isSafeBackupPath(file.path)) {
        throw new BackupIntegrityError(`Cannot restore: unsafe path ${JSON.stringify(file.path)}`);
      }
      if (file.kind === "wal") walByPath.set(file.path, { dir, file });
      if (file.kind === "identity") identity = { dir, file };
    }
  }
  if (!identity) {
    throw new BackupIntegrityError(
      `Cannot restore from ${options.from}: no node.json in the backup`,
    );
  }
  const wal = [...walByPath.values()].sort((a, b) =>
    (a.file.firstLsn ?? 0) - (b.file.firstLsn ?? 0)
  );

  let meta: SnapshotMeta | undefined;
  const snapshotMeta = (): SnapshotMeta => {
    try {
      return meta ??= readSnapshot(`${base.dir}/${snapshot!.path}`);
    } catch (error) {
      throw new BackupIntegrityError(
        `Cannot restore: ${base.dir}/${snapshot!.path} is damaged (${(error as Error).message})`,
      );
    }
  };

  let cut = newest.lastLsn;
  if (options.toLsn !== undefined) {
    if (!Number.isSafeInteger(options.toLsn) || options.toLsn < 0) {
      throw new RangeError(`Invalid --to-lsn ${options.toLsn}`);
    }
    cut = options.toLsn;
  } else if (options.toTimeMs !== undefined) {
    if (snapshot && snapshotLsn > 0) {
      const meta = snapshotMeta();
      if (hlcWallMs(meta.hlc) > options.toTimeMs) {
        if (wal.length > 0 && wal[0].file.firstLsn === 1) {
          snapshotLsn = 0; // the WAL from LSN 1 is here: replay it instead of the snapshot
        } else {
          throw new RestoreRefusedError(
            `Cannot restore to ${
              new Date(options.toTimeMs).toISOString()
            }: this backup's snapshot (LSN ${snapshotLsn}) already holds writes up to ${
              new Date(hlcWallMs(meta.hlc)).toISOString()
            }; restore from an older backup`,
          );
        }
      }
    }
    cut = lsnAtTime(wal, snapshotLsn, newest.lastLsn, options.toTimeMs);
  }
  if (cut > newest.lastLsn) {
    throw new RestoreRefusedError(
      `Cannot restore to LSN ${cut}: the backup ends at LSN ${newest.lastLsn}`,
    );
  }
  if (cut < snapshotLsn && wal.length > 0 && wal[0].file.firstLsn === 1) {
    // The backup holds the WAL from the very start: replay it without the snapshot.
    snapshotLsn = 0;
  }
  if (snapshotLsn === 0 && snapshot && (base.manifest.snapshotLsn ?? 0) > 0) {
    // Replaying instead of the snapshot: only right below the first snapshot install, whose
    // entries are in the snapshot alone.
    const where = options.toTimeMs === undefined
      ? `LSN ${cut}`
      : `${new Date(options.toTimeMs).toISOString()} (LSN ${cut})`;
    refuseLostInstall(snapshotMeta(), cut, newest.lastLsn, where);
  }
  if (cut < snapshotLsn) {
    throw new RestoreRefusedError(
      `Cannot restore to LSN ${cut}: this backup starts from a snapshot at LSN ${snapshotLsn}; restore from an older backup`,
    );
  }
  // The WAL that reaches the cut: contiguous from just after the snapshot (or LSN 1).
  const kept = wal.filter((s) => (s.file.firstLsn ?? 0) <= cut);
  let expected = kept.length > 0 ? kept[0].file.firstLsn! : snapshotLsn + 1;
  if (expected > snapshotLsn + 1) {
    throw new BackupIntegrityError(
      `Cannot restore: the backup's WAL starts at LSN ${expected}, after its snapshot at ${snapshotLsn}`,
    );
  }
  for (const s of kept) {
    if (s.file.firstLsn !== expected) {
      throw new BackupIntegrityError(
        `Cannot restore: the backup's WAL has a gap before ${s.file.path} (expected LSN ${expected})`,
      );
    }
    expected = (s.file.lastLsn ?? 0) + 1;
  }
  if (kept.length > 0 && expected - 1 < cut) {
    throw new BackupIntegrityError(
      `Cannot restore to LSN ${cut}: the backup's WAL ends at LSN ${expected - 1}`,
    );
  }

  const parent = parentOf(target);
  await Deno.mkdir(parent, { recursive: true });
  const temp = `${target}.restore-tmp-${randomHex(4)}`;
  let files = 0;
  let bytes = 0;
  try {
    await Deno.mkdir(`${temp}/wal`, { recursive: true });
    await Deno.mkdir(`${temp}/snapshots`, { recursive: true });
    const copies: Source[] = [
      identity,
      ...(snapshot && snapshotLsn > 0 ? [{ dir: base.dir, file: snapshot }] : []),
      ...kept,
    ];
    for (const source of copies) {
      await copyChecked(source, `${temp}/${source.file.path}`);
      files++;
      bytes += source.file.bytes;
    }
    await newIncarnation(temp);
    const last = kept[kept.length - 1];
    if (last && (last.file.lastLsn ?? 0) > cut) {
      const path = `${temp}/${last.file.path}`;
      let end = -1;
      walkSegment(readWholeFile(path), path, (lsn, offset) => {
        if (lsn === cut) {
          end = offset;
          return false;
        }
        return true;
      });
      if (end < 0) {
        throw new BackupIntegrityError(
          `Cannot restore to LSN ${cut}: ${last.file.path} does not hold it`,
        );
      }
      await Deno.truncate(path, end);
      const handle = await Deno.open(path, { write: true });
      try {
        await handle.sync();
      } finally {
        handle.close();
      }
    }
    for (const dir of [`${temp}/wal`, `${temp}/snapshots`, temp]) await syncDir(dir);
    if (await pathExists(target)) await Deno.remove(target); // empty, checked above
    await Deno.rename(temp, target);
    await syncDir(parent);
  } catch (error) {
    await Deno.remove(temp, { recursive: true }).catch(() => {});
    throw error;
  }
  const notes: string[] = [];
  if (options.toTimeMs !== undefined && options.toTimeMs > newest.createdMs) {
    // The backup cannot know what was written after it was taken: say so, so nobody reads the
    // result as the state at that time.
    notes.push(
      `--to-time ${new Date(options.toTimeMs).toISOString()} is after this backup was taken (${
        new Date(newest.createdMs).toISOString()
      }): restored everything it holds, up to LSN ${cut}; later writes are not in it`,
    );
  }
  return {
    notes,
    dataDir: target,
    nodeId: newest.nodeId,
    clusterId: newest.clusterId,
    chain: chain.map((c) => c.dir),
    snapshotLsn: snapshotLsn > 0 ? snapshotLsn : null,
    lastLsn: cut,
    files,
    bytes,
    durationMs: Math.round(performance.now() - started),
  };
}

/**
 * Gives the restored directory a new origin (src/common/origin.ts). The backup is older than
 * the node's last writes, which its peers may hold: counting on from the backup's own entries
 * would reuse sequence numbers they already have.
 */
async function newIncarnation(dataDir: string): Promise<void> {
  const identity = await readIdentity(dataDir).catch((error) => {
    throw new BackupIntegrityError(
      `Cannot restore: the backup's node.json does not hold a node identity (${
        (error as Error).message
      })`,
    );
  });
  if (!identity) {
    throw new BackupIntegrityError(`Cannot restore: no node.json was copied to ${dataDir}`);
  }
  // Its log numbers LSNs anew after the restore point: no earlier origin is a backup base.
  const { priorOrigins: _prior, ...rest } = identity;
  await writeIdentity(dataDir, { ...rest, origin: newOrigin(identity.nodeId) });
}
