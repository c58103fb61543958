/**
 * Log routes: `POST /v1/log` appends an opaque entry; `GET /v1/log?from=&limit=` reads every
 * entry (puts, deletes, appends) in LSN order.
 *
 * @module
 */
import { Hono } from "hono";
import { HTTP_LOG_LIMIT_DEFAULT, HTTP_LOG_LIMIT_MAX } from "../../common/limits.ts";
import type { Entry } from "../../common/entry.ts";
import { LsnCompactedError } from "../../storage/wal/wal.ts";
import { readBody } from "./body.ts";
import type { HttpContext } from "./context.ts";
import { BYTES_TYPE, checkJson, JSON_TYPE, requireStore } from "./kv_routes.ts";
import { intParam } from "./params.ts";
import { encodeValue } from "./values.ts";
import { jsonArrayResponse } from "./json_steps.ts";
import { ackedResponse, ackLevelOf } from "./replication_http.ts";

export function entryJson(entry: Entry): Record<string, unknown> {
  return {
    lsn: entry.lsn,
    origin: entry.origin,
    seq: entry.seq,
    hlc: entry.hlc,
    op: entry.op,
    ...(entry.op === "append" ? {} : { key: entry.key }),
    ...(entry.value === null
      ? {}
      : { contentType: entry.contentType, ...encodeValue(entry.value, entry.contentType) }),
  };
}

export function logRoutes(ctx: HttpContext): Hono {
  const app = new Hono();

  app.post("/", async (c) => {
    const store = requireStore(ctx);
    const ack = ackLevelOf(c, ctx);
    const header = (c.req.header("content-type") ?? BYTES_TYPE).split(";")[0].trim().toLowerCase();
    const body = await readBody(c.req.raw, store.valueBytesMax, "log entry");
    // JSON entries are checked so the log can return them as JSON; anything else is opaque.
    const type = header === JSON_TYPE ? JSON_TYPE : BYTES_TYPE;
    if (type === JSON_TYPE) checkJson(body);
    const result = await store.append(body, type);
    return await ackedResponse(c, ctx, ack, result.seq, { lsn: result.lsn });
  });

  app.get("/", async (c) => {
    const store = requireStore(ctx);
    const from = intParam(c.req.query("from"), "from", {
      min: 0,
      max: Number.MAX_SAFE_INTEGER,
      fallback: 1,
    });
    const limit = intParam(c.req.query("limit"), "limit", {
      min: 1,
      max: HTTP_LOG_LIMIT_MAX,
      fallback: HTTP_LOG_LIMIT_DEFAULT,
    });
    let entries: Entry[];
    try {
      entries = await store.readLog(Math.max(from, 1), limit);
    } catch (error) {
      if (error instanceof LsnCompactedError) {
        return c.json({
          error: { code: "compacted", message: error.message },
          firstLsn: error.firstLsn,
        }, 410);
      }
      throw error;
    }
    const last = entries.length > 0 ? entries[entries.length - 1].lsn : Math.max(from, 1) - 1;
    return jsonArrayResponse("entries", entries, entryJson, {
      next: last + 1,
      lastLsn: store.lastLsn,
    });
  });

  return app;
}
