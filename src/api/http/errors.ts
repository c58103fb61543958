/**
 * The one place HTTP maps errors: every failure leaves as
 * `{"error": {"code": "...", "message": "..."}}` with a status chosen by the error's code.
 *
 * @module
 */
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { type ErrorCode, ShanghaiError } from "../../common/errors.ts";

const STATUS: Record<ErrorCode, ContentfulStatusCode> = {
  bad_request: 400,
  bad_key: 400,
  bad_json: 400,
  bad_query: 400,
  not_found: 404,
  too_large: 413,
  unsupported_media_type: 415,
  not_ready: 503,
  overloaded: 503,
  closed: 503,
  corrupt: 500,
  io: 500,
  config: 500,
  conflict: 409,
  unreachable: 502,
  timeout: 504,
  refused: 400,
};

export function statusOf(code: ErrorCode): ContentfulStatusCode {
  return STATUS[code];
}

export function errorBody(
  code: string,
  message: string,
): { error: { code: string; message: string } } {
  return { error: { code, message } };
}

/**
 * The status and JSON body for any thrown value; unknown errors are 500s without internals.
 * Shared by hono's error handler and the PUT fast path (fast_path.ts).
 */
export function errorOutcome(
  error: unknown,
  onUnexpected?: (error: unknown) => void,
): { status: ContentfulStatusCode; body: ReturnType<typeof errorBody> } {
  if (error instanceof ShanghaiError) {
    return { status: statusOf(error.code), body: errorBody(error.code, error.message) };
  }
  // Invariant failures and unknown errors are bugs: log them, tell the client nothing internal.
  onUnexpected?.(error);
  return { status: 500, body: errorBody("internal", "Internal error: see the node's log") };
}

/** {@link errorOutcome} as a hono response. */
export function errorResponse(
  c: Context,
  error: unknown,
  onUnexpected?: (error: unknown) => void,
): Response {
  const { status, body } = errorOutcome(error, onUnexpected);
  return c.json(body, status);
}
