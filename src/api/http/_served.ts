/**
 * Test helper: the admin port's server (server.ts) on a free loopback port, with the fast
 * route and a hono app, as the node wires them.
 *
 * @module
 */
import type { Hono } from "hono";
import type { Store } from "../../storage/kv/store.ts";
import { EventBus } from "../../telemetry/events.ts";
import { silentLogger } from "../../telemetry/log.ts";
import type { HttpContext } from "./context.ts";
import { kvPutRoute } from "./fast_path.ts";
import { HttpServer } from "./server.ts";

export interface Served {
  /** "http://127.0.0.1:PORT" */
  url: string;
  server: HttpServer;
  close(): Promise<void>;
}

export function serveOnLoopback(ctx: HttpContext, app: Hono, readTimeoutMs?: number): Served {
  const server = HttpServer.listen({
    readTimeoutMs,
    hostname: "127.0.0.1",
    port: 0,
    handler: (request) => app.fetch(request),
    fastRoute: kvPutRoute(ctx),
    onError: () => new Response("{}", { status: 500 }),
  });
  return { url: `http://127.0.0.1:${server.addr.port}`, server, close: () => server.shutdown() };
}

/** A context for route tests: `store`, always ready, no status, silent. */
export function readyContext(store: Store, events: EventBus = new EventBus()): HttpContext {
  return {
    store: () => store,
    readiness: () => ({ ready: true, reasons: [] }),
    status: () => ({}),
    events,
    logger: silentLogger,
  };
}
