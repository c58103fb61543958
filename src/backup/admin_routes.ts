/**
 * Admin routes of online backup, mounted on the node's HTTP port:
 *
 * - `POST /v1/admin/backup/sessions[?since_lsn=N&node_id=ID&cluster_id=ID&origin=O&last_origin=O&last_seq=S&last_hlc=H]`
 *   takes the cut and answers the session (files, LSN range, the entry at its last LSN); an
 *   incremental request past what the WAL still holds, for another node, cluster or origin (the
 *   node was restored since), or whose base ended with another entry than the one the node's
 *   log now holds at that LSN (the log changed), becomes a full backup and says why
 *   (`fullReason`);
 * - `GET /v1/admin/backup/sessions/:id/file?path=P` streams one file of the cut;
 * - `DELETE /v1/admin/backup/sessions/:id` releases the session (idle ones expire).
 *
 * @module
 */
import type { Hono } from "hono";
import { InputError, ShanghaiError } from "../common/errors.ts";
import type { BackupSessions, BackupSource } from "./session.ts";
import { type EntryId, isEntryId } from "./manifest.ts";

/** A whole number a query parameter may carry: LSNs, sequence numbers and HLCs are safe integers. */
const WHOLE_NUMBER = /^\d{1,16}$/;

function optionalLsn(text: string | undefined): number | undefined {
  if (text === undefined || text === "") return undefined;
  if (!WHOLE_NUMBER.test(text)) {
    throw new InputError(
      "bad_query",
      `Invalid since_lsn ${JSON.stringify(text)}: expected a whole number`,
    );
  }
  return Number(text);
}

/**
 * The base backup's last entry from `last_origin`, `last_seq` and `last_hlc`; undefined when
 * none is given.
 */
function optionalEntryId(
  origin: string | undefined,
  seqText: string | undefined,
  hlcText: string | undefined,
): EntryId | undefined {
  if (!origin && !seqText && !hlcText) return undefined;
  const id = { origin: origin ?? "", seq: Number(seqText), hlc: Number(hlcText) };
  const whole = (text: string | undefined) => WHOLE_NUMBER.test(text ?? "");
  if (!whole(seqText) || !whole(hlcText) || !isEntryId(id)) {
    throw new InputError(
      "bad_query",
      `Invalid last_origin ${JSON.stringify(origin ?? "")}, last_seq ${
        JSON.stringify(seqText ?? "")
      }, last_hlc ${
        JSON.stringify(hlcText ?? "")
      }: expected an origin, a sequence number >= 1 and an HLC, all three or none`,
    );
  }
  return id;
}

/** Mounts the backup routes; `source` is undefined while the node recovers. */
export function backupRoutes(
  sessions: BackupSessions,
  source: () => BackupSource | undefined,
): (app: Hono) => void {
  return (app) => {
    app.post("/v1/admin/backup/sessions", async (c) => {
      const from = source();
      if (!from) {
        throw new ShanghaiError("not_ready", "Cannot start a backup: the node is still recovering");
      }
      const info = await sessions.open(from, {
        sinceLsn: optionalLsn(c.req.query("since_lsn")),
        baseNodeId: c.req.query("node_id") || undefined,
        baseClusterId: c.req.query("cluster_id") || undefined,
        baseOrigin: c.req.query("origin") || undefined,
        baseLastEntry: optionalEntryId(
          c.req.query("last_origin"),
          c.req.query("last_seq"),
          c.req.query("last_hlc"),
        ),
      });
      return c.json(info, 201);
    });
    app.get("/v1/admin/backup/sessions/:id/file", (c) => {
      const path = c.req.query("path");
      if (!path) {
        throw new InputError(
          "bad_query",
          "Cannot read a backup file: the path query parameter is missing",
        );
      }
      const { bytes, body } = sessions.stream(c.req.param("id"), path);
      return new Response(body, {
        status: 200,
        headers: { "content-type": "application/octet-stream", "content-length": String(bytes) },
      });
    });
    app.delete("/v1/admin/backup/sessions/:id", (c) => {
      const closed = sessions.close(c.req.param("id"));
      if (!closed) {
        throw new InputError(
          "not_found",
          `Cannot end backup session ${
            JSON.stringify(c.req.param("id"))
          }: it does not exist or expired`,
        );
      }
      return c.json({ closed: true });
    });
  };
}
