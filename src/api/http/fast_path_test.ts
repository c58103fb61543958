import assert from "node:assert/strict";
import { Hono } from "hono";
import { Store } from "../../storage/kv/store.ts";
import { EventBus, type EventMap } from "../../telemetry/events.ts";
import { silentLogger } from "../../telemetry/log.ts";
import type { HttpContext } from "./context.ts";
import { serveOnLoopback } from "./_served.ts";
import { KV_KEY_ROUTE, matchKvPut } from "./fast_path.ts";

Deno.test("matchKvPut takes plain keys of PUT /v1/kv/ and leaves the rest to hono", () => {
  const base = "http://127.0.0.1:9090";
  assert.deepEqual(matchKvPut("PUT", `${base}/v1/kv/users/1`), {
    key: "users/1",
    query: undefined,
  });
  assert.deepEqual(matchKvPut("PUT", `${base}/v1/kv/a?ack=quorum&x=1`), {
    key: "a",
    query: "ack=quorum&x=1",
  });
  assert.deepEqual(matchKvPut("PUT", "http://[::1]:9090/v1/kv/k"), { key: "k", query: undefined });
  assert.deepEqual(matchKvPut("PUT", "/v1/kv/k?ack=all"), { key: "k", query: "ack=all" });
  assert.equal(matchKvPut("PUT", "/v1/kvk"), undefined);
  assert.deepEqual(matchKvPut("PUT", "/v1/kv/a.b/..c/.d."), {
    key: "a.b/..c/.d.",
    query: undefined,
  });
  for (
    const [method, url] of [
      ["GET", `${base}/v1/kv/a`],
      ["DELETE", `${base}/v1/kv/a`],
      ["PUT", `${base}/v1/kv/`],
      ["PUT", `${base}/v1/kv/?ack=one`],
      ["PUT", `${base}/v1/kv`],
      ["PUT", `${base}/v1/kvx/a`],
      ["PUT", `${base}/v2/kv/a`],
      ["PUT", `${base}/v1/kv/caf%C3%A9`],
      ["PUT", "/v1/kv/caf\u00c3\u00a9"],
      ["PUT", "/v1/kv/a/../b"],
      ["PUT", "/v1/kv/./b"],
      ["PUT", "/v1/kv/a/.."],
      ["PUT", "/v1/kv/a\\b"],
    ]
  ) {
    assert.equal(matchKvPut(method, url), undefined, `${method} ${url}`);
  }
});

async function withServed(
  fn: (handle: (r: Request) => Promise<Response>, store: Store, events: EventBus) => Promise<void>,
): Promise<void> {
  const dataDir = await Deno.makeTempDir({ prefix: "fast-path-test-" });
  const store = await Store.open({ dataDir, nodeId: "n1", valueBytesMax: 64 });
  const events = new EventBus();
  const ctx: HttpContext = {
    store: () => store,
    readiness: () => ({ ready: true, reasons: [] }),
    status: () => ({}),
    events,
    logger: silentLogger,
  };
  // An empty hono app answers 404 to everything: whatever succeeds went by the fast route.
  const served = serveOnLoopback(ctx, new Hono());
  const handle = (request: Request) => {
    const url = new URL(request.url);
    return fetch(`${served.url}${url.pathname}${url.search}`, request);
  };
  try {
    await fn(handle, store, events);
  } finally {
    await served.close();
    await store.close({ snapshot: false });
    await Deno.remove(dataDir, { recursive: true });
  }
}

const put = (path: string, body: string, type = "application/json") =>
  new Request(`http://localhost${path}`, {
    method: "PUT",
    headers: { "content-type": type },
    body,
  });

Deno.test("The fast path writes, answers and reports the request like the hono route", async () => {
  await withServed(async (handle, store, events) => {
    const seen: EventMap["http.request.completed"][] = [];
    events.on("http.request.completed", (e) => seen.push(e));
    const ok = await handle(put("/v1/kv/a", '{"x": 1}'));
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get("content-type"), "application/json");
    const body = await ok.json();
    assert.equal(body.lsn, 1);
    assert.match(body.version, /^\d+\.n1$/);
    assert.deepEqual(store.get("a")?.value, new TextEncoder().encode('{"x": 1}'));

    const bad = await handle(put("/v1/kv/b", "{nope"));
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).error.code, "bad_json");
    assert.equal(store.lastLsn, 1, "a refused write writes nothing");

    assert.deepEqual(
      seen.map((e) => [e.method, e.route, e.status]),
      [["PUT", KV_KEY_ROUTE, 200], ["PUT", KV_KEY_ROUTE, 400]],
    );
    // A percent-encoded key is hono's: the empty app says 404, and nothing was written.
    assert.equal((await handle(put("/v1/kv/caf%C3%A9", "1"))).status, 404);
    assert.equal(store.lastLsn, 1);
  });
});

Deno.test("The fast path answers an unexpected error with a 500 that hides internals", async () => {
  const logged: string[] = [];
  const ctx: HttpContext = {
    store: () => {
      throw new Error("secret internal detail");
    },
    readiness: () => ({ ready: true, reasons: [] }),
    status: () => ({}),
    events: new EventBus(),
    logger: { ...silentLogger, error: (message: string) => logged.push(message) },
  };
  const served = serveOnLoopback(ctx, new Hono());
  const res = await fetch(`${served.url}/v1/kv/a`, put("/v1/kv/a", "1"));
  assert.equal(res.status, 500);
  const text = await res.text();
  await served.close();
  assert.equal(JSON.parse(text).error.code, "internal");
  assert.ok(!text.includes("secret"), text);
  assert.deepEqual(logged, ["Unexpected error in HTTP handler"]);
});

Deno.test("A stored key does not keep its request's head in memory", async () => {
  // V8 cuts substrings as views into their parent: a header value kept in a record kept the
  // whole head (13.4 KB per key with this padding, before the content type was shared).
  const padBytes = 12_000;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      "--v8-flags=--expose-gc",
      new URL("./_head_retention_child.ts", import.meta.url).pathname,
      "300",
      String(padBytes),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, stderr);
  const result = JSON.parse(new TextDecoder().decode(out.stdout));
  assert.deepEqual(Object.keys(result.heapBytesPerKey), [
    "fast route, bytes",
    "fast route, JSON",
    "hono",
    "delete",
  ]);
  for (const [kind, bytes] of Object.entries(result.heapBytesPerKey)) {
    // About 200-1,300 bytes per key here: record, key, value and the tables' growth.
    assert.ok((bytes as number) < padBytes / 4, `${kind}: ${bytes} bytes of heap per key`);
  }
});
