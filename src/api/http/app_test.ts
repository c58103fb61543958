import assert from "node:assert/strict";
import { Store } from "../../storage/kv/store.ts";
import { EventBus } from "../../telemetry/events.ts";
import { silentLogger } from "../../telemetry/log.ts";
import { createApp } from "./app.ts";
import type { HttpContext } from "./context.ts";
import { serveOnLoopback } from "./_served.ts";
import { HTTP_JSON_STEP_ITEMS } from "../../common/limits.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

/** What the tests send requests through: `app.request`'s shape. */
interface Client {
  request(path: string, init?: RequestInit): Promise<Response>;
  close?(): Promise<void>;
}

/**
 * Every test runs twice: through the hono app alone, and over loopback through the admin port's
 * server (the fast route for `PUT /v1/kv/{key}`, hono for the rest), so both answer alike.
 */
const CLIENTS: [string, (ctx: HttpContext) => Client][] = [
  ["hono app", (ctx) => {
    const app = createApp(ctx);
    return { request: async (path, init) => await app.request(path, init) };
  }],
  ["admin port server", (ctx) => {
    const served = serveOnLoopback(ctx, createApp(ctx));
    return { request: (path, init) => fetch(`${served.url}${path}`, init), close: served.close };
  }],
];

function test(name: string, fn: (client: (ctx: HttpContext) => Client) => Promise<void>): void {
  for (const [label, client] of CLIENTS) Deno.test(`${name} (${label})`, () => fn(client));
}

async function withApp(
  client: (ctx: HttpContext) => Client,
  fn: (app: Client, store: Store) => Promise<void>,
  valueBytesMax = 64,
): Promise<void> {
  const dataDir = await Deno.makeTempDir({ prefix: "http-test-" });
  const store = await Store.open({ dataDir, nodeId: "n1", valueBytesMax });
  const ctx: HttpContext = {
    store: () => store,
    readiness: () => ({ ready: true, reasons: [] }),
    status: () => ({ nodeId: "n1", lastLsn: store.lastLsn }),
    events: new EventBus(),
    logger: silentLogger,
  };
  const app = client(ctx);
  try {
    await fn(app, store);
  } finally {
    await app.close?.();
    await store.close({ snapshot: false });
    await Deno.remove(dataDir, { recursive: true });
  }
}

const json = { "content-type": "application/json" };
const octets = { "content-type": "application/octet-stream" };

async function expectError(res: Response, status: number, code: string): Promise<void> {
  assert.equal(res.status, status);
  const body = await res.json();
  assert.equal(body.error.code, code, JSON.stringify(body));
  assert.equal(typeof body.error.message, "string");
}

test("PUT then GET returns JSON and bytes exactly as stored, with their content types", async (client) => {
  await withApp(client, async (app) => {
    const put = await app.request("/v1/kv/users/1", {
      method: "PUT",
      headers: json,
      body: '{"name": "Alice"}',
    });
    assert.equal(put.status, 200);
    assert.equal((await put.json()).lsn, 1);
    const got = await app.request("/v1/kv/users/1");
    assert.equal(got.headers.get("content-type"), "application/json");
    assert.equal(await got.text(), '{"name": "Alice"}');
    const raw = new Uint8Array([0, 255, 1, 254]);
    assert.equal(
      (await app.request("/v1/kv/blob", { method: "PUT", headers: octets, body: raw })).status,
      200,
    );
    const blob = await app.request("/v1/kv/blob");
    assert.equal(blob.headers.get("content-type"), "application/octet-stream");
    assert.deepEqual(new Uint8Array(await blob.arrayBuffer()), raw);
  });
});

test("DELETE removes a key; GET and DELETE of an absent key are 404", async (client) => {
  await withApp(client, async (app) => {
    await app.request("/v1/kv/a", { method: "PUT", headers: json, body: "1" });
    const del = await app.request("/v1/kv/a", { method: "DELETE" });
    assert.equal(del.status, 200);
    assert.equal((await del.json()).lsn, 2);
    await expectError(await app.request("/v1/kv/a"), 404, "not_found");
    await expectError(await app.request("/v1/kv/a", { method: "DELETE" }), 404, "not_found");
  });
});

test("GET /v1/kv lists a prefix with limit and cursor", async (client) => {
  await withApp(client, async (app) => {
    for (const k of ["p:1", "p:2", "p:3", "q:1"]) {
      await app.request(`/v1/kv/${k}`, {
        method: "PUT",
        headers: json,
        body: JSON.stringify({ k }),
      });
    }
    await app.request("/v1/kv/b64", {
      method: "PUT",
      headers: octets,
      body: new Uint8Array([104, 105]),
    });
    const first = await (await app.request("/v1/kv?prefix=p:&limit=2")).json();
    assert.deepEqual(first.items.map((i: { key: string }) => i.key), ["p:1", "p:2"]);
    assert.deepEqual(first.items[0].value, { k: "p:1" });
    assert.equal(first.next, "p:2");
    const second = await (await app.request(`/v1/kv?prefix=p:&limit=2&after=${first.next}`)).json();
    assert.deepEqual(second.items.map((i: { key: string }) => i.key), ["p:3"]);
    assert.equal(second.next, null);
    const bin = await (await app.request("/v1/kv?prefix=b64")).json();
    assert.equal(bin.items[0].valueBase64, "aGk=");
  });
});

test("GET /v1/kv and GET /v1/log answer long pages whole, in several chunks", async (client) => {
  await withApp(client, async (app, store) => {
    const count = 3 * HTTP_JSON_STEP_ITEMS + 7;
    const keys = Array.from({ length: count }, (_, i) => `long:${String(i).padStart(4, "0")}`);
    await Promise.all(
      keys.map((key, i) => store.put(key, bytes(JSON.stringify({ i })), "application/json")),
    );
    // A value an embedding program stored as JSON that is not: the page still answers.
    await store.put("long:zz", bytes("{not json"), "application/json");
    const list = await app.request(`/v1/kv?prefix=long:&limit=${count + 1}`);
    assert.equal(list.status, 200);
    assert.equal(list.headers.get("content-type"), "application/json");
    const page = await list.json();
    assert.deepEqual(page.items.map((item: { key: string }) => item.key), [...keys, "long:zz"]);
    assert.deepEqual(page.items[count - 1].value, { i: count - 1 });
    assert.equal(page.items[count].valueBase64, btoa("{not json"));
    assert.equal(page.next, null);
    const log = await (await app.request(`/v1/log?from=1&limit=${count}`)).json();
    assert.equal(log.entries.length, count);
    assert.equal(log.next, count + 1);
    assert.equal(log.lastLsn, count + 1);
  }, 1024);
});

test("POST /v1/log appends; GET /v1/log returns every entry in LSN order", async (client) => {
  await withApp(client, async (app) => {
    await app.request("/v1/kv/a", { method: "PUT", headers: json, body: "1" });
    const append = await app.request("/v1/log", {
      method: "POST",
      headers: octets,
      body: new Uint8Array([1, 2]),
    });
    assert.deepEqual(await append.json(), { lsn: 2 });
    await app.request("/v1/kv/a", { method: "DELETE" });
    const log = await (await app.request("/v1/log?from=1&limit=10")).json();
    assert.deepEqual(log.entries.map((e: { lsn: number; op: string }) => [e.lsn, e.op]), [
      [1, "put"],
      [2, "append"],
      [3, "delete"],
    ]);
    assert.equal(log.entries[1].valueBase64, "AQI=");
    assert.equal(log.next, 4);
    const page = await (await app.request("/v1/log?from=2&limit=1")).json();
    assert.deepEqual(page.entries.map((e: { lsn: number }) => e.lsn), [2]);
  });
});

test("Bad input gets a 4xx JSON error and changes nothing", async (client) => {
  await withApp(client, async (app, store) => {
    await expectError(
      await app.request("/v1/kv/a", { method: "PUT", headers: json, body: "{not json" }),
      400,
      "bad_json",
    );
    await expectError(
      await app.request("/v1/kv/a%01b", { method: "PUT", headers: json, body: "1" }),
      400,
      "bad_key",
    );
    await expectError(
      await app.request(`/v1/kv/${"k".repeat(1025)}`, { method: "PUT", headers: json, body: "1" }),
      400,
      "bad_key",
    );
    await expectError(await app.request("/v1/kv?limit=0"), 400, "bad_query");
    await expectError(await app.request("/v1/kv?limit=abc"), 400, "bad_query");
    await expectError(await app.request("/v1/log?from=-1"), 400, "bad_query");
    await expectError(await app.request("/v1/log?limit=100000"), 400, "bad_query");
    await expectError(
      await app.request("/v1/kv/a", { method: "PUT", headers: octets, body: new Uint8Array(65) }),
      413,
      "too_large",
    );
    await expectError(
      await app.request("/v1/log", { method: "POST", headers: octets, body: new Uint8Array(65) }),
      413,
      "too_large",
    );
    // A chunked body with no Content-Length is cut off as soon as it passes the limit.
    const stream = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 10; i++) controller.enqueue(new Uint8Array(16));
        controller.close();
      },
    });
    await expectError(
      await app.request("/v1/kv/a", { method: "PUT", headers: octets, body: stream }),
      413,
      "too_large",
    );
    await expectError(
      await app.request("/v1/kv/a", {
        method: "PUT",
        headers: { "content-type": "text/plain" },
        body: "x",
      }),
      415,
      "unsupported_media_type",
    );
    await expectError(await app.request("/v1/kv/missing"), 404, "not_found");
    await expectError(await app.request("/v2/anything"), 404, "not_found");
    assert.equal(store.lastLsn, 0);
  });
});

test("Data routes answer 503 and /ready says why until recovery is done", async (client) => {
  const ctx: HttpContext = {
    store: () => undefined,
    readiness: () => ({ ready: false, reasons: ["recovery in progress"] }),
    status: () => ({}),
    events: new EventBus(),
    logger: silentLogger,
  };
  const app = client(ctx);
  assert.equal((await app.request("/health")).status, 200);
  const ready = await app.request("/ready");
  assert.equal(ready.status, 503);
  assert.deepEqual((await ready.json()).reasons, ["recovery in progress"]);
  await expectError(await app.request("/v1/kv/a"), 503, "not_ready");
  await expectError(
    await app.request("/v1/kv/a", { method: "PUT", headers: json, body: "1" }),
    503,
    "not_ready",
  );
  await expectError(await app.request("/v1/log"), 503, "not_ready");
});

// Over a socket the client's own fetch fails first; server_test.ts cuts a body off by hand.
test("A body that breaks off mid-way is a 400, not a 500, and writes nothing", async (client) => {
  await withApp(client, async (app, store) => {
    const broken = new ReadableStream({
      start(controller) {
        controller.enqueue(new Uint8Array(8));
        controller.error(new Error("connection reset"));
      },
    });
    const res = await app.request("/v1/kv/a", { method: "PUT", headers: octets, body: broken })
      .catch((error) => error);
    if (res instanceof Response) await expectError(res, 400, "bad_request");
    else assert.ok(res instanceof TypeError, String(res));
    assert.equal(store.lastLsn, 0);
  });
});
