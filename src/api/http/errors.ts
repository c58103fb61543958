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

/** Maps any thrown value to a JSON error response; unknown errors are 500s without internals. */
export function errorResponse(
  c: Context,
  error: unknown,
  onUnexpected?: (error: unknown) => void,
): Response {
  if (error instanceof ShanghaiError) {
    return c.json(errorBody(error.code, error.message), statusOf(error.code));
  }
  // Invariant failures and unknown errors are bugs: log them, tell the client nothing internal.
  onUnexpected?.(error);
  return c.json(errorBody("internal", "Internal error: see the node's log"), 500);
}
