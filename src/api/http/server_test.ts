import assert from "node:assert/strict";
import { Hono } from "hono";
import { withTempDir } from "../../../tests/support/temp_dir.ts";
import { Store } from "../../storage/kv/store.ts";
import { readyContext, type Served, serveOnLoopback } from "./_served.ts";
import { kvPutRoute } from "./fast_path.ts";
import { HttpServer, utf8Into } from "./server.ts";

const VALUE_BYTES_MAX = 64;

/** A store behind the admin port's server; `app` adds hono routes for the fallback. */
async function withServer(
  fn: (served: Served, store: Store) => Promise<void>,
  app = new Hono(),
  readTimeoutMs?: number,
): Promise<void> {
  await withTempDir("http-server-test-", async (dataDir) => {
    const store = await Store.open({ dataDir, nodeId: "n1", valueBytesMax: VALUE_BYTES_MAX });
    const served = serveOnLoopback(readyContext(store), app, readTimeoutMs);
    try {
      await fn(served, store);
    } finally {
      await served.close();
      await store.close({ snapshot: false });
    }
  });
}

/** A raw client: sends bytes exactly as given, reads what comes back. */
class RawClient {
  #conn: Deno.TcpConn;
  #received = "";
  #closed = false;
  #decoder = new TextDecoder();

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  static async connect(served: Served): Promise<RawClient> {
    return new RawClient(
      await Deno.connect({ hostname: "127.0.0.1", port: served.server.addr.port }),
    );
  }

  async send(text: string | Uint8Array): Promise<void> {
    const bytes = typeof text === "string" ? new TextEncoder().encode(text) : text;
    let at = 0;
    while (at < bytes.length) at += await this.#conn.write(bytes.subarray(at));
  }

  /** Reads until `done(received)` holds or the server closes; bounded by `timeoutMs`. */
  async readUntil(done: (received: string) => boolean, timeoutMs = 5_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    const buffer = new Uint8Array(64 * 1024);
    while (!done(this.#received) && !this.#closed) {
      const left = deadline - Date.now();
      assert.ok(left > 0, `timed out; received so far: ${JSON.stringify(this.#received)}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const n = await Promise.race([
        this.#conn.read(buffer).catch(() => null),
        new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), left)),
      ]);
      clearTimeout(timer);
      assert.notEqual(n, "timeout", `timed out; received: ${JSON.stringify(this.#received)}`);
      if (n === null) this.#closed = true;
      else this.#received += this.#decoder.decode(buffer.subarray(0, n as number));
    }
    return this.#received;
  }

  /** Reads until `count` whole responses have arrived; returns every one received. */
  async responses(count: number): Promise<ReturnType<typeof responses>> {
    return responses(await this.readUntil((t) => responses(t).length >= count));
  }

  /** Reads until the server closes the connection. */
  async readToEnd(): Promise<string> {
    return await this.readUntil(() => false);
  }

  get closed(): boolean {
    return this.#closed;
  }

  close(): void {
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }
}

/** Responses in `text`: [status, headers, body] for each complete one with a length. */
function responses(text: string): { status: number; headers: Map<string, string>; body: string }[] {
  const out = [];
  let rest = text;
  while (true) {
    const end = rest.indexOf("\r\n\r\n");
    if (end < 0) return out;
    const lines = rest.slice(0, end).split("\r\n");
    const headers = new Map(
      lines.slice(1).map((
        l,
      ) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]),
    );
    const length = Number(headers.get("content-length") ?? "0");
    if (rest.length < end + 4 + length) return out;
    out.push({
      status: Number(lines[0].split(" ")[1]),
      headers,
      body: rest.slice(end + 4, end + 4 + length),
    });
    rest = rest.slice(end + 4 + length);
  }
}

const storedText = (store: Store, key: string) => new TextDecoder().decode(store.get(key)!.value!);

const putText = (key: string, body: string, extra = "") =>
  `PUT /v1/kv/${key} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
  `Content-Length: ${body.length}\r\n${extra}\r\n${body}`;

Deno.test("Pipelined writes in one packet are all answered, in order", async () => {
  await withServer(async (served, store) => {
    const client = await RawClient.connect(served);
    await client.send(putText("a", "1") + putText("b", "22") + putText("c", "333"));
    const answers = await client.responses(3);
    assert.deepEqual(answers.map((r) => r.status), [200, 200, 200]);
    assert.deepEqual(answers.map((r) => JSON.parse(r.body).lsn), [1, 2, 3]);
    assert.equal(answers[0].headers.get("content-type"), "application/json");
    assert.ok(answers[0].headers.has("date"));
    assert.equal(storedText(store, "c"), "333");
    client.close();
  });
});

Deno.test("onRequest hears every request as its head arrives, fast route and handler alike", async () => {
  await withTempDir("http-server-test-", async (dataDir) => {
    const store = await Store.open({ dataDir, nodeId: "n1", valueBytesMax: VALUE_BYTES_MAX });
    let heard = 0;
    const server = HttpServer.listen({
      hostname: "127.0.0.1",
      port: 0,
      handler: () => new Response(JSON.stringify({ heard })),
      fastRoute: kvPutRoute(readyContext(store)),
      onError: () => new Response("{}", { status: 500 }),
      onRequest: () => heard++,
    });
    const served = {
      url: `http://127.0.0.1:${server.addr.port}`,
      server,
      close: () => server.shutdown(),
    };
    try {
      const client = await RawClient.connect(served);
      await client.send(
        putText("a", "1") + putText("b", "2") + "GET /other HTTP/1.1\r\nhost: x\r\n\r\n",
      );
      const answers = await client.responses(3);
      assert.deepEqual(answers.map((r) => r.status), [200, 200, 200]);
      // The handler ran third, after its own head arrived.
      assert.deepEqual(JSON.parse(answers[2].body), { heard: 3 });
      assert.equal(heard, 3);
      client.close();
    } finally {
      await served.close();
      await store.close({ snapshot: false });
    }
  });
});

Deno.test("Short answers are encoded into the reused buffer, longer ones into their own", () => {
  const buffer = new Uint8Array(20);
  const short = utf8Into("héllo€", buffer);
  assert.equal(short.buffer, buffer.buffer);
  assert.deepEqual(short, new TextEncoder().encode("héllo€"));
  const long = utf8Into("€€€€€€€", buffer); // 7 units could need 21 bytes: not tried in place
  assert.notEqual(long.buffer, buffer.buffer);
  assert.equal(new TextDecoder().decode(long), "€€€€€€€");
});

Deno.test("A chunked body and a body sent byte by byte are read whole", async () => {
  await withServer(async (served, store) => {
    const client = await RawClient.connect(served);
    await client.send(
      "PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
        "Transfer-Encoding: chunked\r\n\r\n3;x=y\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n",
    );
    assert.equal(
      (await client.responses(1))[0].status,
      200,
    );
    assert.equal(storedText(store, "a"), "[1,2]");
    for (const byte of new TextEncoder().encode(putText("b", '"slow"'))) {
      await client.send(new Uint8Array([byte]));
    }
    const answers = await client.responses(2);
    assert.equal(answers[1].status, 200);
    assert.equal(storedText(store, "b"), '"slow"');
    client.close();
  });
});

Deno.test("Expect: 100-continue gets a 100 before the body is sent", async () => {
  await withServer(async (served, store) => {
    const client = await RawClient.connect(served);
    await client.send(
      "PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
        "Content-Length: 2\r\nExpect: 100-continue\r\n\r\n",
    );
    await client.readUntil((t) => t.includes("\r\n\r\n"));
    await client.send("42");
    const text = await client.readUntil((t) => t.includes('"lsn"'));
    assert.ok(text.startsWith("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"), text);
    assert.equal(storedText(store, "a"), "42");
    client.close();
  });
});

Deno.test("A value over the limit is refused before its body is read, and the connection closed", async () => {
  await withServer(async (served, store) => {
    const client = await RawClient.connect(served);
    // Only the head is sent: the answer must not wait for the body.
    await client.send(
      "PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n" +
        `Content-Length: ${VALUE_BYTES_MAX + 1}\r\n\r\n`,
    );
    const text = await client.readToEnd();
    const [answer] = responses(text);
    assert.equal(answer.status, 413);
    assert.equal(JSON.parse(answer.body).error.code, "too_large");
    assert.equal(answer.headers.get("connection"), "close");
    // A client that sends the whole oversized body anyway still reads the 413.
    const eager = await RawClient.connect(served);
    const size = 512 * 1024;
    const sending = eager.send(
      "PUT /v1/kv/b HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n" +
        `Content-Length: ${size}\r\n\r\n${"x".repeat(size)}`,
    );
    const eagerText = await eager.readToEnd();
    await sending;
    assert.equal(responses(eagerText)[0]?.status, 413, eagerText.slice(0, 200));
    eager.close();
    assert.equal(store.lastLsn, 0);
  });
});

Deno.test("Malformed and ambiguous requests get a 4xx and a closed connection, writing nothing", async () => {
  await withServer(async (served, store) => {
    const cases: [string, number][] = [
      ["NOT A REQUEST\r\n\r\n", 400],
      ["PUT /v1/kv/a HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n1", 400],
      ["PUT /v1/kv/a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n12", 400],
      [`GET / HTTP/1.1\r\nX: ${"a".repeat(20_000)}\r\n\r\n`, 431],
      ["GET / HTTP/3.0\r\n\r\n", 505],
      [
        "PUT /v1/kv/a HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked" +
        "\r\n\r\nzz\r\n",
        400,
      ],
    ];
    for (const [request, status] of cases) {
      const client = await RawClient.connect(served);
      await client.send(request).catch(() => {}); // The server may close while we still send.
      const text = await client.readToEnd();
      const [answer] = responses(text);
      assert.equal(answer?.status, status, `${JSON.stringify(request.slice(0, 60))}: ${text}`);
      assert.ok(JSON.parse(answer.body).error.code, "a JSON error body");
      client.close();
    }
    assert.equal(store.lastLsn, 0);
  });
});

Deno.test("A client that leaves mid-body writes nothing, and the server goes on", async () => {
  await withServer(async (served, store) => {
    const client = await RawClient.connect(served);
    await client.send(putText("a", "1234567890").slice(0, -5));
    client.close();
    const next = await RawClient.connect(served);
    await next.send(putText("b", "1"));
    const [answer] = await next.responses(1);
    assert.equal(answer.status, 200);
    assert.equal(store.get("a"), undefined);
    assert.equal(store.lastLsn, 1);
    next.close();
  });
});

Deno.test("Dot segments and odd Host headers cannot move a write to another key or route", async () => {
  const app = new Hono();
  app.put("/v1/kv/:key{.+}", (c) => c.json({ hono: c.req.param("key") }));
  app.all("*", (c) => c.json({ path: new URL(c.req.url).pathname }, 404));
  await withServer(async (served, store) => {
    const client = await RawClient.connect(served);
    // The URL parser removes ".." segments, so the fast route leaves such a key to hono.
    await client.send(putText("a/../b", "1"));
    await client.send("GET /v1/status HTTP/1.1\r\nHost: evil/x?\r\n\r\n");
    const [put, get] = await client.responses(2);
    assert.deepEqual(JSON.parse(put.body), { hono: "b" });
    assert.equal(store.lastLsn, 0, "the fast route did not write a key with a dot segment");
    assert.deepEqual(JSON.parse(get.body), { path: "/v1/status" });
    client.close();
  }, app);
});

Deno.test("A client that sends part of a request and stops is cut off; an idle one is not", async () => {
  await withServer(
    async (served, store) => {
      const stalled = await RawClient.connect(served);
      const stalledBody = await RawClient.connect(served);
      const idle = await RawClient.connect(served);
      const started = performance.now();
      await stalled.send("PUT /v1/kv/a HTTP/1.1\r\nHo");
      // A whole head, then 2 of the body's 5 bytes (in a separate packet, or not).
      await stalledBody.send(putText("c", "12345").slice(0, -3));
      assert.equal(await stalled.readToEnd(), "", "closed without an answer");
      const elapsedMs = performance.now() - started;
      assert.ok(elapsedMs >= 200 && elapsedMs < 2_000, `closed after ${elapsedMs} ms`);
      assert.equal(await stalledBody.readToEnd(), "", "closed without an answer");
      const bodyElapsedMs = performance.now() - started;
      assert.ok(bodyElapsedMs < 2_000, `closed after ${bodyElapsedMs} ms`);
      assert.equal(store.get("c"), undefined, "nothing written");
      stalledBody.close();
      // A keep-alive connection with no request under way stays open, and still serves.
      await idle.send(putText("b", "1"));
      const [answer] = await idle.responses(1);
      assert.equal(answer.status, 200);
      stalled.close();
      idle.close();
    },
    new Hono(),
    200,
  );
});

Deno.test("HTTP/1.0 requests are answered and the connection closed", async () => {
  await withServer(async (served) => {
    const client = await RawClient.connect(served);
    await client.send("GET /nothing HTTP/1.0\r\n\r\n");
    const text = await client.readToEnd();
    assert.ok(text.startsWith("HTTP/1.1 404 "), text);
    assert.ok(client.closed);
  });
});

Deno.test("Handler responses: lengths when whole, chunks when streaming, HEAD without a body", async () => {
  const app = new Hono();
  app.get("/json", (c) => c.json({ hello: "wörld" }));
  app.get("/empty", (c) => c.body(null, 204));
  app.get("/stream", () => {
    let n = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        await new Promise((r) => setTimeout(r, 5));
        if (++n > 3) return controller.close();
        controller.enqueue(new TextEncoder().encode(`line ${n}\n`));
      },
    });
    return new Response(body, { headers: { "content-type": "application/x-ndjson" } });
  });
  let release: (() => void) | undefined;
  app.get("/late", () => {
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        await new Promise<void>((r) => release = r);
        controller.enqueue(new TextEncoder().encode("late\n"));
        controller.close();
      },
    });
    return new Response(body, { headers: { "content-type": "application/x-ndjson" } });
  });
  await withServer(async (served) => {
    // A stream with nothing to send yet gets its head at once (the change feed's clients wait
    // for the head before they write what the feed will carry).
    const late = await fetch(`${served.url}/late`);
    assert.equal(late.status, 200);
    release!();
    assert.equal(await late.text(), "late\n");
    const res = await fetch(`${served.url}/json`);
    assert.equal(
      res.headers.get("content-length"),
      String(new TextEncoder().encode('{"hello":"wörld"}').length),
    );
    assert.deepEqual(await res.json(), { hello: "wörld" });
    const empty = await fetch(`${served.url}/empty`);
    assert.equal(empty.status, 204);
    assert.equal(await empty.text(), "");
    const stream = await fetch(`${served.url}/stream`);
    assert.equal(stream.headers.get("transfer-encoding"), "chunked");
    assert.equal(await stream.text(), "line 1\nline 2\nline 3\n");
    // HEAD gets the head only; the connection stays usable for the next request.
    const client = await RawClient.connect(served);
    await client.send(
      "HEAD /json HTTP/1.1\r\nHost: x\r\n\r\nGET /json HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    const text = await client.readUntil((t) => t.includes("wörld"));
    assert.equal(text.split("HTTP/1.1 200 OK").length, 3, text);
    client.close();
  }, app);
});

Deno.test("A streaming response ends when the client leaves or the server shuts down", async () => {
  const cancelled: string[] = [];
  const app = new Hono();
  app.get("/forever", (c) => {
    const name = c.req.query("name") ?? "";
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode("first\n"));
      },
      cancel() {
        cancelled.push(name);
      },
    });
    return new Response(body, { headers: { "content-type": "application/x-ndjson" } });
  });
  await withServer(async (served) => {
    const leaving = await RawClient.connect(served);
    await leaving.send("GET /forever?name=left HTTP/1.1\r\nHost: x\r\n\r\n");
    await leaving.readUntil((t) => t.includes("first"));
    leaving.close();
    const deadline = Date.now() + 5_000;
    while (!cancelled.includes("left") && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual(cancelled, ["left"]);

    const staying = await RawClient.connect(served);
    await staying.send("GET /forever?name=stayed HTTP/1.1\r\nHost: x\r\n\r\n");
    await staying.readUntil((t) => t.includes("first"));
    const idle = await RawClient.connect(served);
    await served.close();
    assert.deepEqual(cancelled, ["left", "stayed"]);
    const text = await staying.readToEnd();
    assert.ok(text.endsWith("0\r\n\r\n"), `the stream ends with its last chunk: ${text}`);
    assert.equal(await idle.readToEnd(), "", "an idle connection is closed without an answer");
    staying.close();
    idle.close();
  }, app);
});

Deno.test("A shutdown ends a stalled request head and a stream that started after it began", async () => {
  // Both once held a node's stop forever: the head sweeper was stopped with the listener,
  // and a stream whose handler answered after the shutdown began was never told to end.
  let cancelled = false;
  const answer = Promise.withResolvers<void>();
  const handlerStarted = Promise.withResolvers<void>();
  const app = new Hono();
  app.get("/late", async () => {
    handlerStarted.resolve();
    await answer.promise;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode("first\n"));
      },
      cancel() {
        cancelled = true;
      },
    });
    return new Response(body, { headers: { "content-type": "application/x-ndjson" } });
  });
  await withServer(
    async (served) => {
      const stalled = await RawClient.connect(served);
      await stalled.send("PUT /v1/kv/a HTTP/1.1\r\nHo");
      const late = await RawClient.connect(served);
      await late.send("GET /late HTTP/1.1\r\nHost: x\r\n\r\n");
      await handlerStarted.promise;
      // What a stop that waits logs: each open connection and what it is doing.
      assert.deepEqual(served.server.pending().sort(), [
        "reading a request head",
        "serving GET /late",
      ]);
      const started = performance.now();
      const closing = served.close();
      answer.resolve();
      await closing;
      const elapsedMs = performance.now() - started;
      assert.ok(elapsedMs < 2_000, `shutdown took ${elapsedMs} ms`);
      assert.ok(cancelled, "the late stream was cancelled");
      assert.equal(await stalled.readToEnd(), "", "the stalled head got no answer");
      const text = await late.readToEnd();
      assert.ok(text.includes("first") && text.endsWith("0\r\n\r\n"), text);
      stalled.close();
      late.close();
    },
    app,
    200,
  );
});

Deno.test("Connections answered a write count as writers expected back until their next request, their end or the window's", async () => {
  await withTempDir("http-server-test-", async (dataDir) => {
    const store = await Store.open({ dataDir, nodeId: "n1" });
    const app = new Hono().get("/ping", (c) => c.text("pong"));
    const listen = (returningWriterMs: number) =>
      HttpServer.listen({
        hostname: "127.0.0.1",
        port: 0,
        handler: (request) => app.fetch(request),
        fastRoute: kvPutRoute(readyContext(store)),
        onError: () => new Response("{}", { status: 500 }),
        returningWriterMs,
      });
    const connect = async (server: HttpServer) =>
      await RawClient.connect({ url: "", server, close: () => server.shutdown() });
    const server = listen(60_000);
    try {
      assert.equal(server.writersExpected(), 0);
      const a = await connect(server);
      const b = await connect(server);
      await a.send(putText("a", "1"));
      assert.deepEqual((await a.responses(1)).map((r) => r.status), [200]);
      assert.equal(server.writersExpected(), 1);
      await b.send(putText("b", "2"));
      await b.responses(1);
      assert.equal(server.writersExpected(), 2);
      // A's next request (a read) takes it off; B leaving takes it off.
      await a.send("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
      assert.deepEqual((await a.responses(2)).map((r) => r.status), [200, 200]);
      assert.equal(server.writersExpected(), 1);
      b.close();
      for (let i = 0; i < 500 && server.writersExpected() > 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.equal(server.writersExpected(), 0);
      // A write answered with the connection closed is not expected back.
      await a.send(putText("c", "3", "Connection: close\r\n"));
      await a.readToEnd();
      assert.equal(server.writersExpected(), 0);
      a.close();
    } finally {
      await server.shutdown();
    }
    const brief = listen(1);
    try {
      const c = await connect(brief);
      await c.send(putText("d", "4"));
      await c.responses(1);
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(
        brief.writersExpected(),
        0,
        "a writer not back within the window is not waited for",
      );
      c.close();
    } finally {
      await brief.shutdown();
      await store.close({ snapshot: false });
    }
  });
});
