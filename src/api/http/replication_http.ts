/**
 * The replication side of the data routes: `?ack=one|quorum|all` on writes (504 with the count
 * of durable copies on timeout; the write is kept), `?consistency=local|causal|quorum` on
 * reads, and the causal token every write and read returns (`x-shanghai-token`).
 *
 * @module
 */
import type { Context } from "hono";
import { AckTimeoutError } from "../../common/errors.ts";
import { decodeToken } from "../../replication/causal_token.ts";
import {
  type Consistency,
  parseAckLevel,
  parseConsistency,
  type ReplicationService,
} from "../../replication/service.ts";
import type { AckLevel } from "../../replication/shipper.ts";
import type { HttpContext } from "./context.ts";

export const TOKEN_HEADER = "x-shanghai-token";

/** The write's ack level from `?ack=`, checked before anything is written. */
export function ackLevelOf(c: Context, ctx: HttpContext): AckLevel {
  return ackLevelFrom(c.req.query("ack"), ctx);
}

/** The ack level for a raw `ack` query value, defaulting to the node's `--ack-default`. */
export function ackLevelFrom(raw: string | undefined, ctx: HttpContext): AckLevel {
  return parseAckLevel(raw, ctx.replication?.()?.ackDefault ?? "one");
}

/** The read's consistency from `?consistency=`. */
export function consistencyOf(c: Context): Consistency {
  return parseConsistency(c.req.query("consistency"));
}

/** What a write's ack wait came to: the status, the JSON body and the causal token. */
export interface AckOutcome {
  status: 200 | 504;
  body: Record<string, unknown>;
  /** The `x-shanghai-token` header; undefined when the node runs without replication. */
  token?: string;
}

/**
 * Waits for the ack level of a durable local write: 200 with `body` plus the copies and the
 * causal token, or 504 saying how many durable copies exist. Shared by the hono routes and
 * the fast path (fast_path.ts), so both answer alike.
 */
export async function ackOutcome(
  ctx: HttpContext,
  level: AckLevel,
  seq: number,
  body: Record<string, unknown>,
): Promise<AckOutcome> {
  const repl = ctx.replication?.();
  // Bare route tests run without replication: nothing to wait for, nothing to report.
  if (!repl) return { status: 200, body };
  try {
    const copies = await repl.waitForAck(seq, level);
    const token = repl.token();
    return { status: 200, body: { ...body, ack: level, copies, token }, token };
  } catch (error) {
    if (!(error instanceof AckTimeoutError)) throw error;
    return {
      status: 504,
      body: {
        error: { code: error.code, message: error.message },
        ...body,
        ack: level,
        copies: error.copies,
        copiesNeeded: error.copiesNeeded,
        members: error.members,
        token: error.token,
      },
      token: error.token,
    };
  }
}

/** {@link ackOutcome} as a hono response. */
export async function ackedResponse(
  c: Context,
  ctx: HttpContext,
  level: AckLevel,
  seq: number,
  body: Record<string, unknown>,
): Promise<Response> {
  const outcome = await ackOutcome(ctx, level, seq, body);
  if (outcome.token !== undefined) c.header(TOKEN_HEADER, outcome.token);
  return c.json(outcome.body, outcome.status);
}

/** For `consistency=causal`: waits (bounded) until the node covers the request's token. */
export async function awaitCausal(c: Context, repl: ReplicationService | undefined): Promise<void> {
  const token = c.req.query("token") ?? c.req.header(TOKEN_HEADER) ?? "";
  const vv = decodeToken(token);
  if (repl) await repl.waitForCausal(vv);
}
