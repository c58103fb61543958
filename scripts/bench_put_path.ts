/**
 * `deno task bench:put-path [--clients 50,10] [--runs 5]`: the JavaScript a `PUT /v1/kv/{key}`
 * costs a node, without sockets and without a disk that waits.
 *
 * Each request is a wrk-like head and a 1 KiB JSON body (the bench's), parsed by the admin
 * port's parser, its body copied into a value slab as the server does, and answered by the fast
 * route (`kvPutRoute`) over a real Store with metrics subscribed. The WAL is on /dev/shm when
 * there is one, with inline fdatasync, so its write and sync are memory copies: what is left is
 * the per-request work on the event loop thread. Requests come in rounds of `clients`
 * concurrent writes, as a node sees them at that many clients, over 100,000 keys.
 *
 * Why: end-to-end runs on these machines swing by 5-10% between minutes, which hides a change
 * of a few percent; this figure's medians stay within about ±3-5%. It leaves out the socket reads and
 * writes, the answer's bytes, the fdatasync and the client, which the node's CPU per PUT in
 * `deno task bench` carries too (docs/BENCHMARKS.md, session 29: about 8 of 24 µs at 50
 * clients are this path).
 *
 * Bounded: fixed rounds per run.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { readyContext } from "../src/api/http/_served.ts";
import { kvPutRoute } from "../src/api/http/fast_path.ts";
import { headerOf, parseRequestHead } from "../src/api/http/h1.ts";
import { takeValueBytes } from "../src/common/value_slab.ts";
import { Store } from "../src/storage/kv/store.ts";
import { EventBus } from "../src/telemetry/events.ts";
import { Metrics } from "../src/telemetry/metrics.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    clients: { type: "string", default: "50,10" },
    runs: { type: "string", default: "5" },
  },
});
const CLIENTS = values.clients.split(",").map(Number);
const RUNS = Number(values.runs);
if (CLIENTS.some((c) => !Number.isInteger(c) || c < 1 || c > 1000) || !(RUNS >= 1 && RUNS <= 50)) {
  console.error("Usage: bench_put_path.ts [--clients 50,10] [--runs 1-50]");
  Deno.exit(2);
}
const KEYS = 100_000;
const WARMUP_WRITES = 200_000;
const WRITES_PER_RUN = 100_000;

const encoder = new TextEncoder();
const body = encoder.encode(`"${"x".repeat(1022)}"`);

/** The bytes wrk sends for one PUT (scripts/wrk_put.lua). */
function requestBytes(n: number): Uint8Array {
  const head = encoder.encode(
    `PUT /v1/kv/bench-${n % KEYS} HTTP/1.1\r\nHost: 127.0.0.1:9090\r\n` +
      `Content-Length: ${body.length}\r\nContent-Type: application/json\r\n\r\n`,
  );
  const bytes = new Uint8Array(head.length + body.length);
  bytes.set(head);
  bytes.set(body, head.length);
  return bytes;
}

async function measure(clients: number): Promise<number[]> {
  const dir = await Deno.makeTempDir({
    dir: (await Deno.stat("/dev/shm").catch(() => undefined))?.isDirectory ? "/dev/shm" : undefined,
    prefix: "shanghai-put-path-",
  });
  const store = await Store.open({ dataDir: dir, nodeId: "bench", inlineSync: true });
  const events = new EventBus();
  const metrics = new Metrics({ events, env: {} });
  const route = kvPutRoute(readyContext(store, events));
  try {
    // Heads for 2,000 keys, reused: building them is the client's work, not the node's.
    const pool = Array.from({ length: 2000 }, (_, i) => requestBytes(i * 50));
    let next = 0;
    const put = async (bytes: Uint8Array): Promise<void> => {
      const head = parseRequestHead(bytes, 0, bytes.length)!;
      const response = await route({
        method: head.method,
        target: head.target,
        header: (name) => headerOf(head, name),
        body: () => {
          const value = takeValueBytes(head.contentLength);
          value.set(bytes.subarray(head.headBytes, head.headBytes + head.contentLength));
          return Promise.resolve(value);
        },
      })!;
      if (response.status !== 200) throw new Error(`PUT answered ${response.status}`);
    };
    const rounds = async (writes: number) => {
      for (let i = 0; i < writes / clients; i++) {
        await Promise.all(Array.from({ length: clients }, () => put(pool[next++ % pool.length])));
      }
    };
    await rounds(WARMUP_WRITES);
    const results: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const started = performance.now();
      await rounds(WRITES_PER_RUN);
      results.push(((performance.now() - started) * 1000) / WRITES_PER_RUN);
    }
    return results;
  } finally {
    await metrics.shutdown();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const fmt = (x: number) => x.toFixed(2);
console.log("| Clients | µs per PUT, median [min-max] | runs |");
console.log("|---:|---:|---:|");
for (const clients of CLIENTS) {
  const runs = (await measure(clients)).sort((a, b) => a - b);
  const median = runs[Math.floor(runs.length / 2)];
  console.log(`| ${clients} | ${fmt(median)} [${fmt(runs[0])}-${fmt(runs.at(-1)!)}] | ${RUNS} |`);
}
console.log(
  `\nCommand: deno task bench:put-path --clients ${CLIENTS.join(",")} --runs ${RUNS}\n` +
    `${WRITES_PER_RUN} writes per run after ${WARMUP_WRITES} to warm up; 1 KiB JSON values over ` +
    `${KEYS} keys; WAL on tmpfs with inline fdatasync; Deno ${Deno.version.deno}.`,
);
