/**
 * The hot write route without the framework: `PUT /v1/kv/{key}` is answered here, straight
 * from Deno.serve, and every other request goes to the hono app.
 *
 * Why: at 50 clients a node is bound by the CPU of its one JavaScript thread, and routing,
 * context objects, middleware and response building cost about a fifth of a PUT's CPU
 * (docs/BENCHMARKS.md, session 3). The work itself is the same function the hono route runs
 * ({@link putValue}), so both paths check, write and answer alike; the fast path only skips
 * the dispatch. Requests it cannot match exactly as hono would (a percent-encoded key, an
 * empty key) go to hono.
 *
 * @module
 */
import type { Hono } from "hono";
import type { HttpContext } from "./context.ts";
import { errorOutcome } from "./errors.ts";
import { putValue } from "./kv_routes.ts";
import { TOKEN_HEADER } from "./replication_http.ts";

/** The route label the hono app reports for the same requests (metrics, traces). */
export const KV_KEY_ROUTE = "/v1/kv/:key{.+}";

const KV_PREFIX = "/v1/kv/";

/**
 * The key of a `PUT /v1/kv/{key}` URL and its raw query, or undefined when the request is not
 * one the fast path serves exactly as hono would.
 */
export function matchKvPut(
  method: string,
  url: string,
): { key: string; query: string | undefined } | undefined {
  if (method !== "PUT") return undefined;
  // An absolute URL: "scheme://authority/path?query". The path starts at the first "/"
  // after the "//".
  const pathStart = url.indexOf("/", url.indexOf("//") + 2);
  if (pathStart < 0 || !url.startsWith(KV_PREFIX, pathStart)) return undefined;
  const keyStart = pathStart + KV_PREFIX.length;
  const queryStart = url.indexOf("?", keyStart);
  const key = queryStart < 0 ? url.slice(keyStart) : url.slice(keyStart, queryStart);
  // Percent-encoded keys are decoded by hono; leave them to it rather than decode twice.
  if (key === "" || key.includes("%")) return undefined;
  return { key, query: queryStart < 0 ? undefined : url.slice(queryStart + 1) };
}

function json(status: number, body: unknown, token?: string): Response {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (token !== undefined) headers[TOKEN_HEADER] = token;
  return new Response(JSON.stringify(body), { status, headers });
}

/**
 * The fetch handler for Deno.serve: the fast path for `PUT /v1/kv/{key}`, hono for the rest.
 * It reports `http.request.completed` as the app's middleware does.
 */
export function serveHandler(ctx: HttpContext, app: Hono): (request: Request) => Promise<Response> {
  const fallback = (request: Request) => Promise.resolve(app.fetch(request));
  return async (request) => {
    const match = matchKvPut(request.method, request.url);
    if (match === undefined) return await fallback(request);
    const started = performance.now();
    let response: Response;
    try {
      const ack = match.query === undefined
        ? undefined
        : new URLSearchParams(match.query).get("ack") ?? undefined;
      const outcome = await putValue(ctx, request, match.key, ack);
      response = json(outcome.status, outcome.body, outcome.token);
    } catch (error) {
      const { status, body } = errorOutcome(
        error,
        (e) =>
          ctx.logger.error("Unexpected error in HTTP handler", {
            route: KV_KEY_ROUTE,
            error: String((e as Error)?.stack ?? e),
          }),
      );
      response = json(status, body);
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
  };
}
