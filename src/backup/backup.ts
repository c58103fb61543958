/**
 * Online backup of a running node into a folder of backups, and `--keep` retention.
 *
 * Steps: take the folder's lock; drop leftovers of a crashed run (`.tmp-*`); ask the node for
 * a session (a consistent cut, see session.ts); copy every file into `.tmp-<name>/`, hashing it
 * on the way and fsyncing it; write the sealed manifest last; rename the folder to `<name>`;
 * fsync the parent. A crash at any point leaves either no new backup or a whole one.
 *
 * `--incremental` asks only for what changed after the newest backup's last LSN (the WAL
 * segments holding later entries); the node answers with a full backup when that is not
 * possible (retention went past it, another node or cluster) and says why.
 *
 * @module
 */
import { pathExists, syncDir, writeAll } from "../storage/durable_fs.ts";
import { createHash } from "node:crypto";
import { ShanghaiError } from "../common/errors.ts";
import {
  type BackupManifest,
  backupName,
  isEntryId,
  isSafeBackupPath,
  listBackups,
  type ManifestFile,
  readManifest,
  sealManifest,
} from "./manifest.ts";
import type { BackupSessionInfo } from "./session.ts";

export const LOCK_FILE = ".lock";
const REQUEST_TIMEOUT_MS = 60_000;

/** Another backup holds the folder's lock. */
export class BackupLockedError extends ShanghaiError {
  override name = "BackupLockedError";
  constructor(readonly lockPath: string, readonly holder: string) {
    super(
      "overloaded",
      `Cannot back up: ${lockPath} is held by ${holder}; another backup is running`,
    );
  }
}

/** The node could not be reached or broke the transfer off. */
export class BackupTransferError extends ShanghaiError {
  override name = "BackupTransferError";
  constructor(message: string, readonly unreachable: boolean, options?: ErrorOptions) {
    super("io", message, options);
  }
}

export interface BackupOptions {
  /** Node HTTP address, host:port. */
  addr: string;
  /** Folder of backups. */
  toDir: string;
  incremental?: boolean;
  /** Keep this many newest backups (and the bases they need); undefined keeps all. */
  keep?: number;
  nowMs?: () => number;
}

export interface BackupSummary {
  name: string;
  path: string;
  kind: "full" | "incremental";
  fullReason?: string;
  base: string | null;
  firstLsn: number;
  lastLsn: number;
  files: number;
  bytes: number;
  durationMs: number;
  pruned: string[];
}

function processAlive(pid: number): boolean {
  // Only Linux can tell (via /proc); elsewhere a lock is assumed live until removed by hand.
  if (Deno.build.os !== "linux") return true;
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** Takes `<dir>/.lock`; a lock whose process is gone (same host) is taken over. */
export async function acquireLock(dir: string): Promise<() => Promise<void>> {
  const path = `${dir}/${LOCK_FILE}`;
  const body = JSON.stringify({ pid: Deno.pid, hostname: Deno.hostname(), startedMs: Date.now() });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await Deno.writeTextFile(path, body, { createNew: true });
      return async () => {
        await Deno.remove(path).catch(() => {});
      };
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
      let holder: { pid?: number; hostname?: string } = {};
      try {
        holder = JSON.parse(await Deno.readTextFile(path));
      } catch { /* half-written lock: treat as held until it is stale by pid */ }
      const sameHost = holder.hostname === Deno.hostname();
      if (sameHost && typeof holder.pid === "number" && !processAlive(holder.pid)) {
        await Deno.remove(path).catch(() => {});
        continue;
      }
      throw new BackupLockedError(
        path,
        holder.pid ? `pid ${holder.pid} on ${holder.hostname}` : "an unknown process",
      );
    }
  }
  throw new BackupLockedError(path, "a process that keeps retaking it");
}

async function request(addr: string, path: string, init: RequestInit = {}): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(`http://${addr}${path}`, {
      ...init,
      signal: init.signal ?? AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (error) {
    throw new BackupTransferError(
      `Cannot reach node at ${addr}: ${(error as Error).message}`,
      true,
      { cause: error },
    );
  }
  if (!response.ok) {
    const text = await response.text();
    let message = text.slice(0, 300);
    try {
      message = JSON.parse(text).error?.message ?? message;
    } catch { /* not JSON */ }
    throw new BackupTransferError(
      `Cannot back up: node at ${addr} answered ${response.status}: ${message}`,
      false,
    );
  }
  return response;
}

async function copyStream(
  body: ReadableStream<Uint8Array>,
  target: string,
): Promise<{ sha256: string; bytes: number }> {
  const file = await Deno.open(target, { write: true, createNew: true });
  const hash = createHash("sha256");
  let bytes = 0;
  try {
    for await (const chunk of body) {
      hash.update(chunk);
      await writeAll(file, chunk);
      bytes += chunk.length;
    }
    await file.sync();
  } finally {
    file.close();
  }
  return { sha256: hash.digest("hex"), bytes };
}

/** Removes `.tmp-*` leftovers of runs that crashed (call with the lock held). */
async function removeLeftovers(dir: string): Promise<void> {
  for await (const item of Deno.readDir(dir)) {
    if (item.isDirectory && item.name.startsWith(".tmp-")) {
      await Deno.remove(`${dir}/${item.name}`, { recursive: true });
    }
  }
}

/**
 * Backups `--keep` removes: all but the newest `keep`, except bases a kept incremental needs.
 * Pure, so the rule is tested without files.
 */
export function backupsToPrune(
  names: readonly string[],
  bases: ReadonlyMap<string, string | null>,
  keep: number,
): string[] {
  const sorted = [...names].sort();
  const needed = new Set<string>();
  for (const name of sorted.slice(Math.max(0, sorted.length - keep))) {
    let at: string | null | undefined = name;
    while (at && !needed.has(at)) {
      needed.add(at);
      at = bases.get(at);
    }
  }
  return sorted.filter((n) => !needed.has(n));
}

async function prune(dir: string, keep: number): Promise<string[]> {
  const names = await listBackups(dir);
  const bases = new Map<string, string | null>();
  for (const name of names) {
    try {
      bases.set(name, (await readManifest(`${dir}/${name}`)).base);
    } catch {
      bases.set(name, null);
    }
  }
  const doomed = backupsToPrune(names, bases, keep);
  for (const name of doomed) {
    // Rename first: a crash mid-delete leaves a .tmp- folder, never a half backup under its name.
    const trash = `${dir}/.tmp-prune-${name}`;
    await Deno.rename(`${dir}/${name}`, trash);
    await Deno.remove(trash, { recursive: true });
  }
  if (doomed.length > 0) await syncDir(dir);
  return doomed;
}

/** Takes one backup of the node at `addr` into a new folder inside `toDir`. */
export async function runBackup(options: BackupOptions): Promise<BackupSummary> {
  const nowMs = options.nowMs ?? Date.now;
  const started = performance.now();
  await Deno.mkdir(options.toDir, { recursive: true });
  const release = await acquireLock(options.toDir);
  try {
    await removeLeftovers(options.toDir);
    const existing = await listBackups(options.toDir);
    let base: { name: string; manifest: BackupManifest } | undefined;
    if (options.incremental && existing.length > 0) {
      const name = existing[existing.length - 1];
      base = { name, manifest: await readManifest(`${options.toDir}/${name}`) };
    }
    const query = base ? `?${incrementalQuery(base.manifest)}` : "";
    const session =
      await (await request(options.addr, `/v1/admin/backup/sessions${query}`, { method: "POST" }))
        .json() as BackupSessionInfo;
    const taken = async (candidate: string) =>
      existing.includes(candidate) || await pathExists(`${options.toDir}/${candidate}`);
    let name = backupName(nowMs());
    for (let n = 1; await taken(name); n++) name = `${backupName(nowMs())}-${n}`;
    const temp = `${options.toDir}/.tmp-${name}`;
    const files: ManifestFile[] = [];
    try {
      await Deno.mkdir(`${temp}/wal`, { recursive: true });
      await Deno.mkdir(`${temp}/snapshots`, { recursive: true });
      for (const info of session.files) {
        if (!isSafeBackupPath(info.path)) {
          throw new BackupTransferError(
            `Cannot back up: the node offered an unexpected path ${JSON.stringify(info.path)}`,
            false,
          );
        }
        const response = await request(
          options.addr,
          `/v1/admin/backup/sessions/${session.id}/file?path=${encodeURIComponent(info.path)}`,
        );
        let copied: { sha256: string; bytes: number };
        try {
          copied = await copyStream(response.body!, `${temp}/${info.path}`);
        } catch (error) {
          throw new BackupTransferError(
            `Cannot back up ${info.path}: the transfer broke off (${(error as Error).message})`,
            false,
            {
              cause: error,
            },
          );
        }
        if (copied.bytes !== info.bytes) {
          throw new BackupTransferError(
            `Cannot back up ${info.path}: received ${copied.bytes} bytes, expected ${info.bytes}`,
            false,
          );
        }
        files.push({ ...info, sha256: copied.sha256 });
      }
      const manifest = sealManifest({
        format: 1,
        kind: session.kind,
        createdMs: nowMs(),
        nodeId: session.nodeId,
        clusterId: session.clusterId,
        ...(session.origin ? { origin: session.origin } : {}),
        base: session.kind === "incremental" && base ? base.name : null,
        firstLsn: session.firstLsn,
        lastLsn: session.lastLsn,
        ...(isEntryId(session.lastEntry) ? { lastEntry: session.lastEntry } : {}),
        snapshotLsn: session.snapshotLsn,
        source: options.addr,
        files,
      });
      const manifestFile = await Deno.open(`${temp}/manifest.json`, {
        write: true,
        createNew: true,
      });
      try {
        // writeAll: one write() may take only part of the buffer.
        await writeAll(
          manifestFile,
          new TextEncoder().encode(JSON.stringify(manifest, null, 2) + "\n"),
        );
        await manifestFile.sync();
      } finally {
        manifestFile.close();
      }
      await syncDir(`${temp}/wal`);
      await syncDir(`${temp}/snapshots`);
      await syncDir(temp);
      await Deno.rename(temp, `${options.toDir}/${name}`);
      await syncDir(options.toDir);
    } catch (error) {
      await Deno.remove(temp, { recursive: true }).catch(() => {});
      throw error;
    } finally {
      await fetch(`http://${options.addr}/v1/admin/backup/sessions/${session.id}`, {
        method: "DELETE",
      })
        .then((r) => r.body?.cancel())
        .catch(() => {});
    }
    const pruned = options.keep !== undefined ? await prune(options.toDir, options.keep) : [];
    return {
      name,
      path: `${options.toDir}/${name}`,
      kind: session.kind,
      ...(session.fullReason ? { fullReason: session.fullReason } : {}),
      base: session.kind === "incremental" && base ? base.name : null,
      firstLsn: session.firstLsn,
      lastLsn: session.lastLsn,
      files: files.length,
      bytes: files.reduce((sum, f) => sum + f.bytes, 0),
      durationMs: Math.round(performance.now() - started),
      pruned,
    };
  } finally {
    await release();
  }
}

/** The query asking the node for an incremental backup on top of `base` (admin_routes.ts). */
function incrementalQuery(base: BackupManifest): URLSearchParams {
  const query = new URLSearchParams({
    since_lsn: String(base.lastLsn),
    node_id: base.nodeId,
    cluster_id: base.clusterId,
  });
  if (base.origin) query.set("origin", base.origin);
  if (base.lastEntry) {
    query.set("last_origin", base.lastEntry.origin);
    query.set("last_seq", String(base.lastEntry.seq));
    query.set("last_hlc", String(base.lastEntry.hlc));
  }
  return query;
}
