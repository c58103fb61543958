/**
 * The node's side of an online backup: a session pins a consistent set of files at one LSN and
 * serves them, one at a time, to the `shanghai backup` client.
 *
 * Consistency: the store applies and acknowledges batches in LSN order, so `wal.lastLsn` and
 * `wal.segments()` read in one synchronous step describe one cut: every segment's first `bytes`
 * hold exactly the entries up to that LSN. A full backup ships the newest snapshot at or below
 * the cut plus every segment holding entries after it; an incremental one ships the segments
 * holding entries after the LSN the client already has.
 *
 * A full backup does not force a fresh snapshot: that would write the whole state to the node's
 * own disk on every backup. The WAL after the newest snapshot is bounded by what the next
 * snapshot waits for (the larger of `snapshot-every-bytes` and `snapshot-wal-percent` of the
 * snapshot's size), so restore replays at most that much; and the extra WAL widens the range a
 * point-in-time restore can reach.
 *
 * Files are opened while the cut is taken and served from those handles, so retention or a
 * newer snapshot may unlink them meanwhile without harm (the inode lives while it is open); the
 * active segment keeps growing, but only its first `bytes` (the cut) are served.
 *
 * @module
 */
import { InputError, OverloadedError } from "../common/errors.ts";
import {
  BACKUP_CHUNK_BYTES,
  BACKUP_SESSION_IDLE_MS,
  BACKUP_SESSIONS_MAX,
} from "../common/limits.ts";
import { randomHex } from "../common/random.ts";
import type { EntryId } from "./manifest.ts";
import { listSnapshots, snapshotFileName } from "../storage/kv/snapshot.ts";
import type { Store } from "../storage/kv/store.ts";
import { LsnCompactedError } from "../storage/wal/wal.ts";
import type { Logger } from "../telemetry/log.ts";

/** One file of a backup, as the manifest lists it. */
export interface BackupFileInfo {
  /** Relative path inside the backup and the restored data directory. */
  path: string;
  bytes: number;
  kind: "identity" | "snapshot" | "wal";
  /** For a WAL segment: the LSNs its first `bytes` hold; for a snapshot: lastLsn is its LSN. */
  firstLsn?: number;
  lastLsn?: number;
}

/** What `POST /v1/admin/backup/sessions` answers. */
export interface BackupSessionInfo {
  id: string;
  kind: "full" | "incremental";
  /** Why a requested incremental became a full backup. */
  fullReason?: string;
  nodeId: string;
  clusterId: string;
  /** The origin the node writes under (src/common/origin.ts): it names the node's log. */
  origin: string;
  /** LSNs this backup adds: 1 for a full one, the base's last + 1 for an incremental one. */
  firstLsn: number;
  lastLsn: number;
  /** The entry at `lastLsn`, when the WAL holds it (see BackupManifest.lastEntry). */
  lastEntry?: EntryId;
  snapshotLsn: number | null;
  files: BackupFileInfo[];
}

interface OpenFile {
  info: BackupFileInfo;
  handle?: Deno.FsFile;
  content?: Uint8Array;
  busy: boolean;
}

interface Session {
  info: BackupSessionInfo;
  files: Map<string, OpenFile>;
  lastUsedMs: number;
}

export interface BackupSource {
  store: Store;
  nodeId: string;
  clusterId: string;
  /** The data directory's node.json, served as the backup's identity file. */
  identityPath: string;
  /** Origins the node's log wrote under before its current one (Identity.priorOrigins). */
  priorOrigins?: readonly string[];
}

export interface OpenRequest {
  /** Ask for an incremental backup after this LSN (the newest backup's last LSN). */
  sinceLsn?: number;
  /** The base backup's node, cluster and origin: an incremental needs the same ones. */
  baseNodeId?: string;
  baseClusterId?: string;
  baseOrigin?: string;
  /** The entry the base backup ended with, when its manifest names it. */
  baseLastEntry?: EntryId;
}

const CUT_ATTEMPTS = 3;

/** Open backup sessions of one node. */
export class BackupSessions {
  readonly #sessions = new Map<string, Session>();
  readonly #logger: Logger;
  readonly #nowMs: () => number;

  constructor(options: { logger: Logger; nowMs: () => number }) {
    this.#logger = options.logger;
    this.#nowMs = options.nowMs;
  }

  get size(): number {
    return this.#sessions.size;
  }

  /** Takes the cut and opens its files. */
  async open(source: BackupSource, request: OpenRequest): Promise<BackupSessionInfo> {
    if (this.#sessions.size >= BACKUP_SESSIONS_MAX) {
      throw new OverloadedError(
        "overloaded",
        `Cannot start a backup: ${this.#sessions.size} backups already run on this node; retry later`,
      );
    }
    const { store } = source;
    let fullReason: string | undefined;
    let since: number | undefined = request.sinceLsn;
    if (since !== undefined) {
      if (!Number.isSafeInteger(since) || since < 0) {
        throw new InputError(
          "bad_query",
          `Invalid since_lsn ${since}: expected a whole number >= 0`,
        );
      }
      if (request.baseClusterId !== undefined && request.baseClusterId !== source.clusterId) {
        fullReason =
          `the newest backup is of cluster ${request.baseClusterId}, this node is in ${source.clusterId}`;
      } else if (request.baseNodeId !== undefined && request.baseNodeId !== source.nodeId) {
        fullReason = `the newest backup is of node ${request.baseNodeId}, this is ${source.nodeId}`;
      } else if (
        request.baseOrigin !== undefined && request.baseOrigin !== store.origin &&
        !(source.priorOrigins ?? []).includes(request.baseOrigin)
      ) {
        // Restored or remade since: its LSNs after the restore point number another log.
        fullReason =
          `the newest backup is of origin ${request.baseOrigin}, this node now writes as ${store.origin} (its data directory was restored or remade since)`;
      } else if (since > store.lastLsn) {
        fullReason =
          `the newest backup ends at LSN ${since}, past this node's last LSN ${store.lastLsn}`;
      } else if (since + 1 < store.wal.firstLsn) {
        fullReason =
          `retention removed LSNs after ${since}; the WAL starts at ${store.wal.firstLsn}`;
      } else if (request.baseLastEntry !== undefined && since >= store.wal.firstLsn) {
        // The node's log is the base's only while the base's last entry is still where it was:
        // a disk that lost records it had made durable numbers new entries over those LSNs.
        const held = await entryIdAt(store, since);
        const base = request.baseLastEntry;
        if (
          held === undefined || held.origin !== base.origin || held.seq !== base.seq ||
          held.hlc !== base.hlc
        ) {
          const named = (id: EntryId) => `${id.origin}:${id.seq} (HLC ${id.hlc})`;
          fullReason = `the newest backup ended with entry ${
            named(base)
          } at LSN ${since}, and this node's log holds ${
            held ? named(held) : "nothing"
          } there: its log changed after the backup (its disk lost records it had made durable), so later LSNs name other entries`;
        }
      }
      if (fullReason !== undefined) since = undefined;
    }
    const identity = await Deno.readFile(source.identityPath);
    for (let attempt = 1;; attempt++) {
      try {
        const session = await this.#cut(source, since, identity);
        if (fullReason !== undefined) session.info.fullReason = fullReason;
        this.#sessions.set(session.info.id, session);
        this.#logger.info("Backup session opened", {
          session: session.info.id,
          kind: session.info.kind,
          firstLsn: session.info.firstLsn,
          lastLsn: session.info.lastLsn,
          snapshotLsn: session.info.snapshotLsn,
          files: session.info.files.length,
          bytes: session.info.files.reduce((sum, f) => sum + f.bytes, 0),
          ...(fullReason ? { fullReason } : {}),
        });
        return session.info;
      } catch (error) {
        // A file unlinked between the cut and its open (retention, a newer snapshot): cut again.
        if (!(error instanceof Deno.errors.NotFound) || attempt >= CUT_ATTEMPTS) throw error;
      }
    }
  }

  async #cut(
    source: BackupSource,
    since: number | undefined,
    identity: Uint8Array,
  ): Promise<Session> {
    const { store } = source;
    // One synchronous step: the LSN and the segment sizes describe the same cut.
    const lastLsn = store.lastLsn;
    const segments = store.wal.segments();
    const files = new Map<string, OpenFile>();
    const put = (info: BackupFileInfo, open: Omit<OpenFile, "info" | "busy">) =>
      files.set(info.path, { info, busy: false, ...open });
    try {
      let snapshotLsn: number | null = null;
      let walFrom: number;
      if (since === undefined) {
        const snapshots = await listSnapshots(store.snapshotDir);
        const usable = snapshots.find((s) => s.lsn <= lastLsn && s.lsn + 1 >= segments[0].firstLsn);
        if (usable === undefined && segments[0].firstLsn > 1) {
          throw new InputError(
            "not_found",
            `Cannot back up: no snapshot covers the LSNs before ${segments[0].firstLsn}`,
          );
        }
        if (usable !== undefined && usable.lsn > 0) {
          snapshotLsn = usable.lsn;
          const handle = await Deno.open(usable.path, { read: true });
          // The canonical name: a local copy's generation suffix is no part of the backup.
          put({
            path: `snapshots/${snapshotFileName(usable.lsn)}`,
            bytes: (await handle.stat()).size,
            kind: "snapshot",
            lastLsn: usable.lsn,
          }, { handle });
        }
        walFrom = (snapshotLsn ?? 0) + 1;
      } else {
        walFrom = since + 1;
      }
      for (const [i, segment] of segments.entries()) {
        const isLast = i === segments.length - 1;
        if (segment.lastLsn < walFrom && !isLast) continue;
        if (segment.firstLsn > lastLsn + 1) continue;
        const handle = await Deno.open(`${store.walDir}/${segment.fileName}`, { read: true });
        put({
          path: `wal/${segment.fileName}`,
          bytes: segment.bytes,
          kind: "wal",
          firstLsn: segment.firstLsn,
          lastLsn: Math.min(segment.lastLsn, lastLsn),
        }, { handle });
      }
      put({ path: "node.json", bytes: identity.length, kind: "identity" }, { content: identity });
      const lastEntry = lastLsn >= segments[0].firstLsn
        ? await entryIdAt(store, lastLsn)
        : undefined;
      const info: BackupSessionInfo = {
        id: randomHex(8),
        kind: since === undefined ? "full" : "incremental",
        nodeId: source.nodeId,
        clusterId: source.clusterId,
        origin: store.origin,
        firstLsn: since === undefined ? 1 : since + 1,
        lastLsn,
        ...(lastEntry ? { lastEntry } : {}),
        snapshotLsn,
        files: [...files.values()].map((f) => f.info),
      };
      return { info, files, lastUsedMs: this.#nowMs() };
    } catch (error) {
      for (const f of files.values()) f.handle?.close();
      throw error;
    }
  }

  /** Streams one file of a session: exactly the bytes of the cut. */
  stream(id: string, path: string): { bytes: number; body: ReadableStream<Uint8Array> } {
    const session = this.#sessions.get(id);
    if (!session) {
      throw new InputError(
        "not_found",
        `Cannot read backup session ${JSON.stringify(id)}: it does not exist or expired`,
      );
    }
    const file = session.files.get(path);
    if (!file) {
      throw new InputError(
        "not_found",
        `Cannot read ${JSON.stringify(path)}: not a file of backup session ${id}`,
      );
    }
    if (file.busy) {
      throw new InputError(
        "bad_request",
        `Cannot read ${JSON.stringify(path)}: it is being read already`,
      );
    }
    session.lastUsedMs = this.#nowMs();
    const total = file.info.bytes;
    if (file.content) {
      const content = file.content;
      return { bytes: total, body: new Blob([content as BlobPart]).stream() };
    }
    const handle = file.handle!;
    file.busy = true;
    let sent = 0;
    let started = false;
    const body = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        try {
          if (!started) {
            await handle.seek(0, Deno.SeekMode.Start);
            started = true;
          }
          if (sent >= total) {
            file.busy = false;
            controller.close();
            return;
          }
          const chunk = new Uint8Array(Math.min(BACKUP_CHUNK_BYTES, total - sent));
          const n = await handle.read(chunk);
          if (n === null || n === 0) {
            file.busy = false;
            controller.error(
              new Error(`Cannot read ${path}: it ended at byte ${sent} of ${total}`),
            );
            return;
          }
          sent += n;
          session.lastUsedMs = this.#nowMs();
          controller.enqueue(chunk.subarray(0, n));
        } catch (error) {
          file.busy = false;
          controller.error(error);
        }
      },
      cancel: () => {
        file.busy = false;
      },
    }, { highWaterMark: 0 });
    return { bytes: total, body };
  }

  /** Ends a session and releases its files. */
  close(id: string, reason = "finished"): boolean {
    const session = this.#sessions.get(id);
    if (!session) return false;
    this.#sessions.delete(id);
    for (const f of session.files.values()) {
      try {
        f.handle?.close();
      } catch { /* already closed */ }
    }
    this.#logger.info("Backup session closed", { session: id, reason });
    return true;
  }

  /** Closes sessions idle for longer than BACKUP_SESSION_IDLE_MS (a client that died). */
  sweep(): void {
    const now = this.#nowMs();
    for (const [id, session] of this.#sessions) {
      if (
        now - session.lastUsedMs > BACKUP_SESSION_IDLE_MS &&
        ![...session.files.values()].some((f) => f.busy)
      ) {
        this.close(id, "idle");
      }
    }
  }

  closeAll(): void {
    for (const id of [...this.#sessions.keys()]) this.close(id, "node stopping");
  }
}

/** Which entry `lsn` holds in the store's WAL; undefined when it is gone. */
async function entryIdAt(store: Store, lsn: number): Promise<EntryId | undefined> {
  try {
    const [entry] = await store.wal.read(lsn, { limit: 1 });
    return entry?.lsn === lsn
      ? { origin: entry.origin, seq: entry.seq, hlc: entry.hlc }
      : undefined;
  } catch (error) {
    // Retention removed it between the check and the read.
    if (error instanceof LsnCompactedError) return undefined;
    throw error;
  }
}
