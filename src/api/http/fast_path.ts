/**
 * The hot write route without the framework: `PUT /v1/kv/{key}` is answered here, on the raw
 * request the admin port's server (server.ts) parsed, and every other request goes to the
 * hono app.
 *
 * Why: at 50 clients a node is bound by CPU, and routing, context objects, middleware, the web
 * Request and Response objects and the body's stream cost about as much as the write (docs/
 * BENCHMARKS.md, sessions 3 and 6). The work itself is the same function the hono route runs
 * ({@link putValue}), so both paths check, write and answer alike; the fast route only skips
 * the dispatch. Requests it cannot match exactly as hono would (a percent-encoded key, an
 * empty key) go to hono.
 *
 * @module
 */
import type { HttpContext } from "./context.ts";
import { errorOutcome } from "./errors.ts";
import { putValue } from "./kv_routes.ts";
import { TOKEN_HEADER } from "./replication_http.ts";
import type { FastRequest, FastResponse, FastRoute } from "./server.ts";

/** The route label the hono app reports for the same requests (metrics, traces). */
export const KV_KEY_ROUTE = "/v1/kv/:key{.+}";

const KV_PREFIX = "/v1/kv/";

/**
 * Whether the URL parser leaves `key` as it is, so the fast route reads the same key hono
 * would: printable ASCII without "%" (hono decodes escapes), "\\" (read as "/") or "." and
 * ".." segments (removed). Everything else goes to hono.
 */
function plainKey(key: string): boolean {
  if (key === "") return false;
  for (let i = 0; i < key.length; i++) {
    const code = key.charCodeAt(i);
    if (code < 0x21 || code > 0x7e || code === 0x25 || code === 0x5c) return false;
  }
  if (!key.includes(".")) return true;
  return !`/${key}/`.includes("/./") && !`/${key}/`.includes("/../");
}

/**
 * The key of a `PUT /v1/kv/{key}` request target (origin-form "/v1/kv/k?q" or an absolute
 * URL) and its raw query, or undefined when the request is not one the fast route serves
 * exactly as hono would.
 */
export function matchKvPut(
  method: string,
  target: string,
): { key: string; query: string | undefined } | undefined {
  if (method !== "PUT") return undefined;
  // An absolute URL: "scheme://authority/path?query". The path starts at the first "/"
  // after the "//".
  const pathStart = target[0] === "/" ? 0 : target.indexOf("/", target.indexOf("//") + 2);
  if (pathStart < 0 || !target.startsWith(KV_PREFIX, pathStart)) return undefined;
  const keyStart = pathStart + KV_PREFIX.length;
  const queryStart = target.indexOf("?", keyStart);
  const key = queryStart < 0 ? target.slice(keyStart) : target.slice(keyStart, queryStart);
  if (!plainKey(key)) return undefined;
  return { key, query: queryStart < 0 ? undefined : target.slice(queryStart + 1) };
}

/**
 * The admin port's fast route: `PUT /v1/kv/{key}` answered here, undefined for the rest. It
 * reports `http.request.completed` as the app's middleware does.
 */
export function kvPutRoute(ctx: HttpContext): FastRoute {
  return (request) => {
    const match = matchKvPut(request.method, request.target);
    return match === undefined ? undefined : put(ctx, request, match.key, match.query);
  };
}

async function put(
  ctx: HttpContext,
  request: FastRequest,
  key: string,
  query: string | undefined,
): Promise<FastResponse> {
  const started = performance.now();
  let response: FastResponse;
  try {
    const ack = query === undefined
      ? undefined
      : new URLSearchParams(query).get("ack") ?? undefined;
    const outcome = await putValue(
      ctx,
      key,
      ack,
      request.header("content-type"),
      (bytesMax, what) => request.body(bytesMax, what),
    );
    response = {
      status: outcome.status,
      body: JSON.stringify(outcome.body),
      headers: outcome.token === undefined ? undefined : { [TOKEN_HEADER]: outcome.token },
    };
  } catch (error) {
    const { status, body } = errorOutcome(
      error,
      (e) =>
        ctx.logger.error("Unexpected error in HTTP handler", {
          route: KV_KEY_ROUTE,
          error: String((e as Error)?.stack ?? e),
        }),
    );
    response = { status, body: JSON.stringify(body) };
  }
  if (ctx.events.has("http.request.completed")) {
    ctx.events.emit("http.request.completed", {
      method: "PUT",
      route: KV_KEY_ROUTE,
      status: response.status,
      durationMs: performance.now() - started,
    });
  }
  return response;
}
