/**
 * Helpers shared by the benchmarks: a closed-loop load generator with latency percentiles,
 * free loopback ports, RSS of a process, the entry the WAL benchmarks append, and a minimal
 * NATS client (the JetStream publish-with-ack path only) so the replication comparison needs
 * no extra dependency.
 *
 * @module
 */

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
