/**
 * Replication routes: `GET /v1/replicas` (per-peer streams), `GET /v1/digest` (an
 * order-independent digest of the key-value state with the version vector, so anyone can
 * check convergence) and `GET /v1/changes?from=&limit=` (a change feed: newline-delimited JSON,
 * one applied entry per line, that keeps streaming as entries arrive).
 *
 * The change feed keeps the entries applied since its client last pulled, up to
 * CHANGES_QUEUE_ENTRIES_MAX entries and CHANGES_QUEUE_BYTES_MAX of values, and answers from them
 * while they follow on from its cursor: a caught-up feed does not read back from the WAL what
 * was just written. Anything else (a feed that starts in the past, entries it dropped while its
 * queue was full) it reads from the WAL, so a slow client costs at most that queue and one read
 * batch of memory, not a backlog.
 *
 * @module
 */
import { Hono } from "hono";
import type { Entry } from "../../common/entry.ts";
import {
  CHANGES_QUEUE_BYTES_MAX,
  CHANGES_QUEUE_ENTRIES_MAX,
  READ_ENTRIES_MAX,
} from "../../common/limits.ts";
import { viewDigest } from "../../replication/service.ts";
import { LsnCompactedError } from "../../storage/wal/wal.ts";
import type { HttpContext } from "./context.ts";
import { requireStore } from "./kv_routes.ts";
import { entryJson } from "./log_routes.ts";
import { intParam } from "./params.ts";

const CHANGES_READ_ENTRIES = 1000;
/** A caught-up feed rechecks its client this often (and sends nothing). */
const CHANGES_IDLE_RECHECK_MS = 5_000;

/**
 * The entries applied since a change feed's client last pulled, in LSN order. Full (in entries
 * or in their values' bytes), it takes no more until the client catches up; the feed then reads
 * what it missed from the WAL.
 */
export class ChangeQueue {
  readonly max: number;
  readonly bytesMax: number;
  #entries: Entry[] = [];
  #bytes = 0;

  constructor(max = CHANGES_QUEUE_ENTRIES_MAX, bytesMax = CHANGES_QUEUE_BYTES_MAX) {
    this.max = max;
    this.bytesMax = bytesMax;
  }

  get size(): number {
    return this.#entries.length;
  }

  /** Bytes of the kept entries' values. */
  get bytes(): number {
    return this.#bytes;
  }

  push(entry: Entry): void {
    const bytes = entry.value?.length ?? 0;
    if (this.#entries.length >= this.max || this.#bytes + bytes > this.bytesMax) return;
    this.#entries.push(entry);
    this.#bytes += bytes;
  }

  /**
   * At most `max` kept entries that continue from `cursor` without a gap: none when the entry
   * at `cursor` is not kept. Entries below `cursor` are dropped; those after a gap stay.
   */
  take(cursor: number, max: number): Entry[] {
    const kept = this.#entries;
    let skip = 0;
    while (skip < kept.length && kept[skip].lsn < cursor) skip++;
    let take = 0;
    while (skip + take < kept.length && take < max && kept[skip + take].lsn === cursor + take) {
      take++;
    }
    for (let i = 0; i < skip + take; i++) this.#bytes -= kept[i].value?.length ?? 0;
    const out = kept.slice(skip, skip + take);
    this.#entries = kept.slice(skip + take);
    return out;
  }
}

export function replicationRoutes(ctx: HttpContext): Hono {
  const app = new Hono();

  app.get("/replicas", (c) => {
    const store = requireStore(ctx);
    const repl = ctx.replication?.();
    return c.json({
      nodeId: store.nodeId,
      lastLsn: store.lastLsn,
      // Cheap to read, unlike the digest: enough to watch a catch-up.
      versionVector: store.versionVector(),
      members: repl?.shipper.members() ?? [store.nodeId],
      refusedFrames: repl?.shipper.refusedFrames ?? 0,
      conflicts: store.conflicts,
      replicas: repl?.replicas() ?? [],
    });
  });

  app.get("/digest", async (c) => {
    const store = requireStore(ctx);
    return c.json({ ...(await viewDigest(store)), nodeId: store.nodeId });
  });

  app.get("/changes", (c) => {
    const store = requireStore(ctx);
    const from = intParam(c.req.query("from"), "from", {
      min: 0,
      max: Number.MAX_SAFE_INTEGER,
      fallback: store.lastLsn + 1,
    });
    const limit = intParam(c.req.query("limit"), "limit", {
      min: 1,
      max: Number.MAX_SAFE_INTEGER,
      fallback: Number.MAX_SAFE_INTEGER,
    });
    const first = Math.max(from, 1);
    if (first < store.wal.firstLsn && first <= store.lastLsn) {
      const error = new LsnCompactedError(first, store.wal.firstLsn);
      return c.json({
        error: { code: "compacted", message: error.message },
        firstLsn: error.firstLsn,
      }, 410);
    }
    // The client going away cancels the stream (cancel below); request.signal is not used
    // because Deno aborts it when a response completes, not when the client leaves.
    let cancelled = false;
    const encoder = new TextEncoder();
    let cursor = first;
    let sent = 0;
    let wake: (() => void) | undefined;
    const queued = new ChangeQueue();
    const off = store.onApply((entry) => {
      queued.push(entry);
      const w = wake;
      wake = undefined;
      w?.();
    });
    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        while (true) {
          if (cancelled || sent >= limit) {
            off();
            controller.close();
            return;
          }
          if (cursor <= store.lastLsn) {
            const max = Math.min(CHANGES_READ_ENTRIES, READ_ENTRIES_MAX, limit - sent);
            let entries = queued.take(cursor, max);
            try {
              if (entries.length === 0) entries = await store.readLog(cursor, max);
            } catch (error) {
              off();
              const message = error instanceof LsnCompactedError
                ? error.message
                : "Cannot read the log: see the node's log";
              controller.enqueue(
                encoder.encode(JSON.stringify({ error: { code: "compacted", message } }) + "\n"),
              );
              controller.close();
              return;
            }
            if (entries.length === 0) continue;
            cursor = entries[entries.length - 1].lsn + 1;
            sent += entries.length;
            controller.enqueue(
              encoder.encode(entries.map((e) => JSON.stringify(entryJson(e))).join("\n") + "\n"),
            );
            return;
          }
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, CHANGES_IDLE_RECHECK_MS);
            wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
        }
      },
      cancel() {
        cancelled = true;
        off();
        wake?.();
      },
    });
    return new Response(stream, {
      headers: { "content-type": "application/x-ndjson", "cache-control": "no-store" },
    });
  });

  return app;
}
