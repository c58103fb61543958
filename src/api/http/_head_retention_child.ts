/**
 * Test child (run with `--v8-flags=--expose-gc`, see server_memory_test.ts): writes keys
 * through the admin port's server, the fast route (PUT) and hono (PUT of a percent-encoded
 * key, DELETE), each request with a large padding header, and prints how much heap the stored
 * keys hold once the requests are gone, by way of writing:
 * `{"keys": n, "padBytes": p, "heapBytesPerKey": {"fast route, bytes": b, ...}}`.
 *
 * @module
 */
import { Store } from "../../storage/kv/store.ts";
import { createApp } from "./app.ts";
import { readyContext, serveOnLoopback } from "./_served.ts";

const KEYS = Number(Deno.args[0] ?? 300);
const PAD_BYTES = Number(Deno.args[1] ?? 8192);
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("run with --v8-flags=--expose-gc");

const dataDir = await Deno.makeTempDir({ prefix: "head-retention-" });
const store = await Store.open({ dataDir, nodeId: "n1" });
const ctx = readyContext(store);
const served = serveOnLoopback(ctx, createApp(ctx));
const conn = await Deno.connect({ hostname: "127.0.0.1", port: served.server.addr.port });
const utf8 = new TextEncoder();
const pad = "p".repeat(PAD_BYTES);
const answer = new Uint8Array(4096);

/** Sends one request and reads its whole (short, length-delimited) answer; returns the status. */
async function request(method: string, path: string, type?: string): Promise<number> {
  const body = method === "PUT" ? "1" : "";
  const head = `${method} ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\nx-pad: ${pad}\r\n` +
    (type ? `content-type: ${type}\r\n` : "") + `content-length: ${body.length}\r\n\r\n`;
  await conn.write(utf8.encode(head + body));
  let text = "";
  while (true) {
    const n = await conn.read(answer);
    if (n === null) throw new Error("server closed the connection");
    text += new TextDecoder().decode(answer.subarray(0, n));
    const end = text.indexOf("\r\n\r\n");
    const length = /content-length: (\d+)/i.exec(text);
    if (end >= 0 && length && text.length >= end + 4 + Number(length[1])) break;
  }
  return Number(text.slice(9, 12));
}

/** The requests of one way to store a key; each must answer 200. */
const KINDS: Record<string, (key: string) => [string, string, string?][]> = {
  // The fast route, with the content types as most clients send them.
  "fast route, bytes": (key) => [["PUT", `/v1/kv/${key}`, "application/octet-stream"]],
  "fast route, JSON": (key) => [["PUT", `/v1/kv/${key}`, "application/json"]],
  // hono: a percent-encoded key, a content type with parameters.
  "hono": (key) => [["PUT", `/v1/kv/${key}-%C3%A9`, "Application/JSON; charset=utf-8"]],
  // A tombstone keeps the key.
  "delete": (key) => [["PUT", `/v1/kv/${key}`, "application/json"], ["DELETE", `/v1/kv/${key}`]],
};

async function writeKeys(kind: string, from: number, to: number): Promise<void> {
  for (let i = from; i < to; i++) {
    // Every key is over 13 characters, the length from which V8 cuts substrings as views.
    const key = `${kind.replace(/\W/g, "-")}-key-${String(i).padStart(6, "0")}`;
    for (const [method, path, type] of KINDS[kind](key)) {
      const status = await request(method, path, type);
      if (status !== 200) throw new Error(`${method} ${path} answered ${status}`);
    }
  }
}

const heapBytesPerKey: Record<string, number> = {};
for (const kind of Object.keys(KINDS)) {
  // Warm up first (code, the connection's buffers, the store's tables), then measure.
  await writeKeys(kind, 0, 50);
  gc();
  const before = Deno.memoryUsage().heapUsed;
  await writeKeys(kind, 50, 50 + KEYS);
  gc();
  heapBytesPerKey[kind] = Math.round((Deno.memoryUsage().heapUsed - before) / KEYS);
}
conn.close();
await served.close();
await store.close({ snapshot: false });
await Deno.remove(dataDir, { recursive: true });
console.log(JSON.stringify({ keys: KEYS, padBytes: PAD_BYTES, heapBytesPerKey }));
