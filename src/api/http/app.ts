/**
 * The HTTP API on the admin port: data routes, admin routes, health and readiness.
 *
 * @module
 */
import { Hono } from "hono";
import type { HttpContext } from "./context.ts";
import { errorBody, errorResponse } from "./errors.ts";
import { kvRoutes } from "./kv_routes.ts";
import { logRoutes } from "./log_routes.ts";

/** Extra route groups mounted by later layers (cluster, replication, metrics, backup). */
export type RouteMount = (app: Hono) => void;

export function createApp(ctx: HttpContext, mounts: readonly RouteMount[] = []): Hono {
  const app = new Hono();

  app.use("*", async (c, next) => {
    const started = performance.now();
    await next();
    if (ctx.events.has("http.request.completed")) {
      ctx.events.emit("http.request.completed", {
        method: c.req.method,
        route: c.req.routePath,
        status: c.res.status,
        durationMs: performance.now() - started,
      });
    }
  });

  app.get("/health", (c) => c.json({ status: "ok" }));
  app.get("/ready", (c) => {
    const readiness = ctx.readiness();
    if (readiness.ready) return c.json({ ready: true });
    return c.json({
      ready: false,
      ...errorBody("not_ready", `Not ready: ${readiness.reasons.join("; ")}`),
      reasons: readiness.reasons,
    }, 503);
  });
  app.get("/v1/status", async (c) => c.json(await ctx.status()));

  app.route("/v1/kv", kvRoutes(ctx));
  app.route("/v1/log", logRoutes(ctx));
  for (const mount of mounts) mount(app);

  app.notFound((c) =>
    c.json(
      errorBody("not_found", `No route for ${c.req.method} ${new URL(c.req.url).pathname}`),
      404,
    )
  );
  app.onError((error, c) =>
    errorResponse(
      c,
      error,
      (e) =>
        ctx.logger.error("Unexpected error in HTTP handler", {
          route: c.req.path,
          error: String((e as Error)?.stack ?? e),
        }),
    )
  );
  return app;
}
