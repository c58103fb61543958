import assert from "node:assert/strict";
import { EventBus } from "./events.ts";
import { Tracing } from "./tracing.ts";
import { tracingWanted } from "./tracing_wanted.ts";

Deno.test("tracingWanted() follows the standard OTEL_* variables", () => {
  assert.equal(tracingWanted({}), false);
  assert.equal(tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318" }), true);
  assert.equal(
    tracingWanted({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://127.0.0.1:4318/v1/traces" }),
    true,
  );
  assert.equal(tracingWanted({ OTEL_TRACES_EXPORTER: "otlp" }), true);
  assert.equal(
    tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://x", OTEL_TRACES_EXPORTER: "none" }),
    false,
  );
  assert.equal(
    tracingWanted({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://x", OTEL_SDK_DISABLED: "true" }),
    false,
  );
});

Deno.test("Tracing exports spans for HTTP requests and WAL writes to a loopback OTLP receiver", async () => {
  const bodies: string[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (request) => {
      if (new URL(request.url).pathname === "/v1/traces") bodies.push(await request.text());
      else await request.body?.cancel();
      return new Response("{}", { headers: { "content-type": "application/json" } });
    },
  );
  const events = new EventBus();
  const tracing = new Tracing({
    events,
    env: {
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${server.addr.port}`,
      OTEL_TRACES_SAMPLER: "always_on",
    },
    nodeId: "n1",
  });
  try {
    events.emit("http.request.completed", {
      method: "PUT",
      route: "/v1/kv/:key{.+}",
      status: 200,
      durationMs: 3,
    });
    events.emit("wal.write.completed", {
      durationMs: 2,
      syncMs: 1,
      bytes: 100,
      entries: 2,
      gatherMs: 0,
    });
    await tracing.flush();
    const all = bodies.join("\n");
    assert.ok(all.includes('"name":"PUT /v1/kv/:key{.+}"'), all.slice(0, 400));
    assert.ok(all.includes('"name":"wal.write"'));
    assert.ok(all.includes('"stringValue":"n1"'));
  } finally {
    await tracing.shutdown();
    await server.shutdown();
  }
});

Deno.test("Tracing samples a tenth of the spans by default, every span with always_on", async () => {
  let spans = 0;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (request) => {
      const body = await request.json();
      for (const rs of body.resourceSpans ?? []) {
        for (const ss of rs.scopeSpans ?? []) {
          spans += ss.spans?.length ?? 0;
        }
      }
      return new Response("{}", { headers: { "content-type": "application/json" } });
    },
  );
  try {
    for (
      const [sampler, low, high] of [[undefined, 100, 300], ["always_on", 2000, 2000]] as const
    ) {
      spans = 0;
      const events = new EventBus();
      const env: Record<string, string> = {
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${server.addr.port}`,
      };
      if (sampler) env.OTEL_TRACES_SAMPLER = sampler;
      const tracing = new Tracing({ events, env });
      for (let i = 0; i < 2000; i++) {
        events.emit("http.request.completed", {
          method: "GET",
          route: "/x",
          status: 200,
          durationMs: 1,
        });
        if (i % 500 === 499) await tracing.flush();
      }
      await tracing.flush();
      await tracing.shutdown();
      assert.ok(spans >= low && spans <= high, `${sampler ?? "default"}: ${spans} spans of 2000`);
    }
  } finally {
    await server.shutdown();
  }
});
