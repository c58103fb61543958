/**
 * `GET /metrics`: every instrument in Prometheus text format (0.0.4), for Prometheus to scrape
 * and for `shanghai metrics`. Answers 404 when the node runs with `--metrics off`.
 *
 * @module
 */
import type { Hono } from "hono";
import { InputError } from "../../common/errors.ts";

/** What the route needs: the rendered text, or undefined when metrics are off. */
export type PrometheusSource = () => Promise<string> | undefined;

export function metricsRoutes(render: PrometheusSource): (app: Hono) => void {
  return (app) => {
    app.get("/metrics", async (c) => {
      const text = render();
      if (text === undefined) {
        throw new InputError(
          "not_found",
          "Cannot serve metrics: this node runs with --metrics off",
        );
      }
      return c.body(await text, 200, {
        "content-type": "text/plain; version=0.0.4; charset=utf-8",
      });
    });
  };
}
