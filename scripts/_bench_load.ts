/**
 * Helpers shared by the benchmarks: a closed-loop load generator with latency percentiles,
 * free loopback ports, RSS of a process, the entry the WAL benchmarks append, a minimal
 * keep-alive HTTP/1.1 client and a minimal NATS client (the JetStream publish-with-ack path
 * only) so the replication comparison needs no extra dependency.
 *
 * @module
 */
import { concatBytes } from "../src/common/bytes.ts";

export interface LoadResult {
  ops: number;
  errors: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  firstError?: string;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

/**
 * `clients` workers each call `op(worker, i)` back to back for `durationMs` (bounded by
 * `opsMax` in total). Returns throughput and latency percentiles of the successful calls.
 */
export async function runLoad(
  clients: number,
  durationMs: number,
  opsMax: number,
  op: (worker: number, i: number) => Promise<void>,
): Promise<LoadResult> {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let issued = 0;
  const started = performance.now();
  const deadline = started + durationMs;
  await Promise.all(Array.from({ length: clients }, async (_, worker) => {
    while (performance.now() < deadline && issued < opsMax) {
      const i = issued++;
      const t0 = performance.now();
      try {
        await op(worker, i);
        latencies.push(performance.now() - t0);
      } catch (error) {
        errors++;
        firstError ??= String((error as Error)?.message ?? error);
      }
    }
  }));
  const elapsed = performance.now() - started;
  latencies.sort((a, b) => a - b);
  return {
    ops: latencies.length,
    errors,
    opsPerSec: latencies.length * 1000 / elapsed,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    firstError,
  };
}

/** A free TCP port on loopback (bound, then released). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** The median of `values` (the mean of the middle two for an even count). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Linux's USER_HZ: the unit of utime and stime in /proc/<pid>/stat. */
const CLOCK_TICKS_PER_SECOND = 100;

/**
 * A process's CPU time (user + system, ms) and minor page faults so far, from
 * /proc/<pid>/stat, or one of its threads' (the main thread, whose id is the pid, runs the event
 * loop); undefined where it cannot be read (not Linux, or the process is gone).
 */
export function processCounters(
  pid: number,
  thread?: number,
): { cpuMs: number; minorFaults: number } | undefined {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(
      thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`,
    );
  } catch {
    return undefined;
  }
  // The fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return {
    minorFaults: Number(fields[7]),
    cpuMs: (Number(fields[11]) + Number(fields[12])) * 1000 / CLOCK_TICKS_PER_SECOND,
  };
}

/** Resident set size of a process, in bytes (VmRSS from /proc). */
export async function rssBytes(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const match = /VmRSS:\s+(\d+)\s+kB/.exec(status);
  return match ? Number(match[1]) * 1024 : NaN;
}

export async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < timeoutMs) {
    try {
      if (await check()) return performance.now() - started;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
}

const utf8 = new TextEncoder();
const text = new TextDecoder();

/** An HTTP answer as {@link HttpClient} reads it. */
export interface HttpAnswer {
  status: number;
  body: Uint8Array;
}

/** Throws with the status and the start of the body unless the answer is a 200. */
export function expectOk(answer: HttpAnswer): void {
  if (answer.status !== 200) {
    throw new Error(`${answer.status} ${text.decode(answer.body).slice(0, 200)}`);
  }
}

const HTTP_HEAD_END = new Uint8Array([13, 10, 13, 10]);

function indexOfBytes(haystack: Uint8Array, needle: Uint8Array, from: number): number {
  outer: for (let i = from; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/**
 * One keep-alive HTTP/1.1 connection, one request at a time: the request goes out in one
 * socket write, the answer is read into a reused buffer. The load generator's own cost per
 * request is what the machine's two cores do not spend on the systems measured: `fetch` took
 * 110-170 µs of CPU per write in the replication rows, about as much as a node (session 15).
 * An answer without a Content-Length is an error.
 */
class HttpConn {
  readonly #conn: Deno.TcpConn;
  #buffer = new Uint8Array(64 * 1024);
  #end = 0;

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  static async connect(hostname: string, port: number): Promise<HttpConn> {
    const conn = await Deno.connect({ hostname, port });
    conn.setNoDelay(true);
    return new HttpConn(conn);
  }

  async request(head: Uint8Array, body: Uint8Array | undefined): Promise<HttpAnswer> {
    const out = body === undefined || body.length === 0 ? head : concatBytes([head, body]);
    for (let at = 0; at < out.length;) at += await this.#conn.write(out.subarray(at));
    let headEnd: number;
    while ((headEnd = indexOfBytes(this.#buffer.subarray(0, this.#end), HTTP_HEAD_END, 0)) < 0) {
      await this.#fill();
    }
    const headText = text.decode(this.#buffer.subarray(0, headEnd));
    const status = Number(headText.slice(9, 12));
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(headText);
    // Both systems measured (Shanghai, etcd's gateway) answer with a length.
    if (!length) throw new Error(`HTTP answer without a length: ${headText.split("\r\n")[0]}`);
    const bodyStart = headEnd + 4;
    const bodyEnd = bodyStart + Number(length[1]);
    while (this.#end < bodyEnd) await this.#fill();
    const answer = this.#buffer.slice(bodyStart, bodyEnd);
    this.#buffer.copyWithin(0, bodyEnd, this.#end);
    this.#end -= bodyEnd;
    return { status, body: answer };
  }

  async #fill(): Promise<void> {
    if (this.#end === this.#buffer.length) {
      const bigger = new Uint8Array(this.#buffer.length * 2);
      bigger.set(this.#buffer);
      this.#buffer = bigger;
    }
    const n = await this.#conn.read(this.#buffer.subarray(this.#end));
    if (n === null) throw new Error("HTTP connection closed by the server");
    this.#end += n;
  }

  close(): void {
    try {
      this.#conn.close();
    } catch { /* closed */ }
  }
}

/**
 * Keep-alive HTTP/1.1 requests to one `host:port`: a pool of {@link HttpConn}s, one per request
 * in flight, kept open between requests.
 */
export class HttpClient {
  readonly #hostname: string;
  readonly #port: number;
  readonly #host: string;
  #idle: HttpConn[] = [];
  #all = new Set<HttpConn>();

  constructor(addr: string) {
    const colon = addr.lastIndexOf(":");
    this.#hostname = addr.slice(0, colon);
    this.#port = Number(addr.slice(colon + 1));
    this.#host = addr;
  }

  /** Sends one request; `headers` are extra header lines, each without its CRLF. */
  async request(
    method: string,
    path: string,
    options: { headers?: string[]; body?: Uint8Array } = {},
  ): Promise<HttpAnswer> {
    const lines = [`${method} ${path} HTTP/1.1`, `host: ${this.#host}`, ...(options.headers ?? [])];
    if (options.body !== undefined || method === "PUT" || method === "POST") {
      lines.push(`content-length: ${options.body?.length ?? 0}`);
    }
    const head = utf8.encode(`${lines.join("\r\n")}\r\n\r\n`);
    let conn = this.#idle.pop();
    if (conn === undefined) {
      conn = await HttpConn.connect(this.#hostname, this.#port);
      this.#all.add(conn);
    }
    try {
      const answer = await conn.request(head, options.body);
      this.#idle.push(conn);
      return answer;
    } catch (error) {
      this.#all.delete(conn);
      conn.close();
      throw error;
    }
  }

  close(): void {
    for (const conn of this.#all) conn.close();
    this.#all.clear();
    this.#idle = [];
  }
}

/** One NATS connection that publishes to JetStream and waits for each publish ack. */
export class NatsClient {
  #conn: Deno.TcpConn;
  #buffer = new Uint8Array(0);
  #pending = new Map<string, (payload: string) => void>();
  #inbox = `_INBOX.${crypto.randomUUID().replaceAll("-", "")}`;
  #next = 0;
  #pong: (() => void) | undefined;

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  static async connect(port: number): Promise<NatsClient> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    const client = new NatsClient(conn);
    client.#readLoop();
    const pong = new Promise<void>((resolve) => client.#pong = resolve);
    await client.#write(
      `CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true}\r\nSUB ${client.#inbox}.* 1\r\nPING\r\n`,
    );
    await pong;
    return client;
  }

  async #write(data: string | Uint8Array): Promise<void> {
    let bytes = typeof data === "string" ? utf8.encode(data) : data;
    while (bytes.length > 0) bytes = bytes.subarray(await this.#conn.write(bytes));
  }

  async #readLoop(): Promise<void> {
    const chunk = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await this.#conn.read(chunk);
        if (n === null) return;
        const merged = new Uint8Array(this.#buffer.length + n);
        merged.set(this.#buffer);
        merged.set(chunk.subarray(0, n), this.#buffer.length);
        this.#buffer = merged;
        this.#parse();
      }
    } catch { /* closed */ }
  }

  #parse(): void {
    while (true) {
      const buf = this.#buffer;
      let eol = -1;
      for (let i = 0; i + 1 < buf.length; i++) {
        if (buf[i] === 13 && buf[i + 1] === 10) {
          eol = i;
          break;
        }
      }
      if (eol < 0) return;
      const line = text.decode(buf.subarray(0, eol));
      if (line.startsWith("MSG ") || line.startsWith("HMSG ")) {
        const parts = line.split(" ");
        const total = Number(parts[parts.length - 1]);
        if (buf.length < eol + 2 + total + 2) return;
        const payload = text.decode(buf.subarray(eol + 2, eol + 2 + total));
        this.#buffer = buf.subarray(eol + 2 + total + 2);
        this.#pending.get(parts[1])?.(payload);
        this.#pending.delete(parts[1]);
        continue;
      }
      this.#buffer = buf.subarray(eol + 2);
      if (line === "PING") this.#write("PONG\r\n");
      else if (line === "PONG") this.#pong?.();
      else if (line.startsWith("-ERR")) console.error(`nats: ${line}`);
    }
  }

  /** Publishes and resolves with the reply (JetStream's ack JSON). */
  async request(subject: string, payload: Uint8Array): Promise<string> {
    const reply = `${this.#inbox}.${this.#next++}`;
    const answered = new Promise<string>((resolve) => this.#pending.set(reply, resolve));
    const head = utf8.encode(`PUB ${subject} ${reply} ${payload.length}\r\n`);
    const frame = new Uint8Array(head.length + payload.length + 2);
    frame.set(head);
    frame.set(payload, head.length);
    frame.set([13, 10], head.length + payload.length);
    await this.#write(frame);
    return await answered;
  }

  close(): void {
    try {
      this.#conn.close();
    } catch { /* closed */ }
  }
}
