/**
 * The admin port's HTTP/1.1 server, on `Deno.listen`: one loop per connection that parses
 * requests with h1.ts, hands `PUT /v1/kv/{key}` to a fast route that works on the raw bytes,
 * and builds a web `Request` for everything else (the hono app) and writes its `Response` back.
 *
 * Why not `Deno.serve`: with it, the HTTP machinery around a 1 KiB write (request and header
 * objects, the body's ReadableStream, response headers) cost about as much CPU as the write
 * itself, and one client paid 0.1-0.3 ms of latency for it (docs/BENCHMARKS.md, session 6).
 * Here a write costs one read and one write on the socket.
 *
 * Requests on one connection are served one at a time, in order (pipelined requests wait in
 * the buffer). Responses with a known length are sent with Content-Length; streams of unknown
 * length (the change feed) with chunked coding, ended when the client goes away or the server
 * shuts down.
 *
 * @module
 */
import { concatBytes } from "../../common/bytes.ts";
import { InputError, ShanghaiError, TooLargeError } from "../../common/errors.ts";
import { HTTP_BODY_BYTES_MAX, HTTP_REQUEST_READ_TIMEOUT_MS } from "../../common/limits.ts";
import { takeValueBytes } from "../../common/value_slab.ts";
import {
  ChunkedDecoder,
  headerOf,
  HttpParseError,
  parseRequestHead,
  type RequestHead,
  statusHasNoBody,
  statusLine,
} from "./h1.ts";
import { brokenBodyError } from "./body.ts";
import { errorBody, statusOf } from "./errors.ts";

/** A request as the fast route sees it: the head, and the body on demand. */
export interface FastRequest {
  readonly method: string;
  /** The request target as sent ("/v1/kv/a?ack=all"). */
  readonly target: string;
  /** The first header named `name` (lower case). */
  header(name: string): string | undefined;
  /**
   * The whole body, refused with a {@link TooLargeError} when over `bytesMax` (before reading
   * a declared length). `what` names the body in the error ("value").
   */
  body(bytesMax: number, what: string): Promise<Uint8Array>;
}

/** A fast route's answer: a JSON text and its status. */
export interface FastResponse {
  status: number;
  /** A JSON document. */
  body: string;
  /** Extra header fields, lower-case names. */
  headers?: Record<string, string>;
}

/** Takes a request (and answers it) or returns undefined to leave it to the handler. */
export type FastRoute = (request: FastRequest) => Promise<FastResponse> | undefined;

export interface HttpServerOptions {
  hostname: string;
  port: number;
  /** Answers every request the fast route does not take. */
  handler: (request: Request) => Response | Promise<Response>;
  fastRoute?: FastRoute;
  /**
   * How long a connection answered a fast-route write counts as a writer expected back
   * ({@link HttpServer.writersExpected}; default RETURNING_WRITER_MS_DEFAULT).
   */
  returningWriterMs?: number;
  /** The response when the handler throws. */
  onError: (error: unknown) => Response;
  /** Called as each request's head has arrived (the node's idle poller, src/node/idle_poll.ts). */
  onRequest?: () => void;
  /** How long a request's head and body may take to arrive whole (HTTP_REQUEST_READ_TIMEOUT_MS). */
  readTimeoutMs?: number;
}

/** The read buffer of a connection: a request head always fits (HTTP_HEAD_BYTES_MAX). */
const CONNECTION_BUFFER_BYTES = 64 * 1024;
/**
 * Bytes of each connection's buffer for short answers (#writeFast), reused across its
 * responses: a fresh array per answer is a malloc here and a free on a GC thread, about 3 µs
 * each on our machines. Longer answers get their own array.
 */
const RESPONSE_BUFFER_BYTES = 2 * 1024;
/** Bodies up to this size are sent in the same write as the head. */
const COALESCE_BYTES_MAX = 64 * 1024;
/** Header fields a response's own fields may not set: the server frames the message. */
const FRAMING_HEADERS = new Set([
  "connection",
  "content-length",
  "transfer-encoding",
  "keep-alive",
]);
/**
 * After refusing a request whose bytes are still arriving, the server stops sending and reads
 * (and drops) up to this much for up to this long before closing, so the client reads the
 * refusal instead of a reset (a close with unread data resets the connection).
 */
const LINGER_BYTES_MAX = 1024 * 1024;
const LINGER_MS = 2_000;
/**
 * Sweeps (one every half read timeout) after which a request still arriving is closed: noted
 * between sweeps k and k+1, it is closed at sweep k+3, 1x to 1.5x the timeout after it began.
 */
const READ_TIMEOUT_SWEEPS = 3;
/**
 * A connection answered a fast-route write counts as a writer expected back (see
 * {@link HttpServer.writersExpected}) for this long, unless its next request starts sooner: a
 * load generator on this machine sends its next request 20-60 µs after an answer.
 */
const RETURNING_WRITER_MS_DEFAULT = 1;
const EMPTY = new Uint8Array(0);
/** A Host header that is a host name, IPv4 or bracketed IPv6 address, and optional port. */
const HOST_PATTERN = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/;
const encoder = new TextEncoder();

let dateSecond = -1;
let dateText = "";
/** The Date header's value, made at most once a second. */
function httpDate(): string {
  const nowMs = Date.now();
  const second = Math.floor(nowMs / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(nowMs).toUTCString();
  }
  return dateText;
}

/**
 * The UTF-8 bytes of `text`: a view of `buffer` when they surely fit (each UTF-16 unit takes
 * at most 3 bytes), else a new array.
 */
export function utf8Into(text: string, buffer: Uint8Array): Uint8Array {
  if (text.length * 3 > buffer.length) return encoder.encode(text);
  return buffer.subarray(0, encoder.encodeInto(text, buffer).written);
}

function utf8Length(text: string): number {
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) > 0x7f) return encoder.encode(text).length;
  }
  return text.length;
}

/**
 * The promise's value if it settles within a few turns of the microtask queue (a read of a body
 * that is ready takes two), else undefined; the promise itself keeps running.
 */
async function settledSoon<T>(promise: Promise<T>): Promise<T | undefined> {
  const soon = (async () => {
    for (let i = 0; i < 8; i++) await undefined;
    return undefined;
  })();
  return await Promise.race([promise, soon]);
}

function errorJson(status: number, code: string, message: string): FastResponse {
  return { status, body: JSON.stringify(errorBody(code, message)) };
}

const PARSE_ERROR_CODES: Record<number, string> = {
  400: "bad_request",
  413: "too_large",
  417: "bad_request",
  431: "too_large",
  501: "bad_request",
  505: "bad_request",
};

/** The socket went away or broke; the connection ends without an answer. */
class ConnectionGone extends Error {
  override name = "ConnectionGone";
}

function isDisconnect(error: unknown): boolean {
  return error instanceof ConnectionGone || error instanceof Deno.errors.BadResource ||
    (error instanceof Error && /reset|broken pipe|closed/i.test(error.message));
}

export class HttpServer {
  readonly #options: HttpServerOptions;
  readonly #listener: Deno.TcpListener;
  readonly #connections = new Set<Connection>();
  /** Connections answered a fast-route write, not yet back with a request: when answered (ms). */
  readonly #returning = new Map<Connection, number>();
  readonly #accepting: Promise<void>;
  /** Closes connections whose request head is overdue (a client that sends part and stops). */
  readonly #sweeper: ReturnType<typeof setInterval>;
  #sweeps = 0;
  #closing = false;

  private constructor(options: HttpServerOptions) {
    this.#options = options;
    this.#listener = Deno.listen({ hostname: options.hostname, port: options.port });
    this.#accepting = this.#accept();
    const readTimeoutMs = options.readTimeoutMs ?? HTTP_REQUEST_READ_TIMEOUT_MS;
    // One timer per server, not per request, sweeping every half limit: a request notes the
    // sweep count when it starts arriving (no clock read per request), and one still arriving
    // READ_TIMEOUT_SWEEPS sweeps later is closed, between 1x and 1.5x its limit.
    this.#sweeper = setInterval(() => {
      this.#sweeps++;
      for (const connection of this.#connections) connection.onSweep(this.#sweeps);
    }, Math.max(1, Math.floor(readTimeoutMs / 2)));
  }

  /** Listens on `hostname:port` (0 picks a free port); throws if the address is taken. */
  static listen(options: HttpServerOptions): HttpServer {
    return new HttpServer(options);
  }

  get addr(): Deno.NetAddr {
    return this.#listener.addr;
  }

  get closing(): boolean {
    return this.#closing;
  }

  /**
   * How many keep-alive connections were answered a write (`PUT /v1/kv/{key}`) within the last
   * `returningWriterMs` and have not started their next request: writers that will likely
   * append again in a moment, whom the WAL lets a short batch wait for
   * (WalOptions.expectedWriters).
   */
  writersExpected(): number {
    if (this.#returning.size === 0) return 0;
    const oldest = performance.now() -
      (this.#options.returningWriterMs ?? RETURNING_WRITER_MS_DEFAULT);
    for (const [connection, answeredMs] of this.#returning) {
      // Oldest first (a Map keeps insertion order, and each answer re-inserts).
      if (answeredMs >= oldest) break;
      this.#returning.delete(connection);
    }
    return this.#returning.size;
  }

  /** Notes a keep-alive connection just answered a write: a writer expected back. */
  writerAnswered(connection: Connection): void {
    // Deleted first so the Map's order stays the order of answers (writersExpected relies on it).
    this.#returning.delete(connection);
    this.#returning.set(connection, performance.now());
  }

  /** Notes a connection sent more bytes or ended: no longer a writer expected back. */
  writerBack(connection: Connection): void {
    this.#returning.delete(connection);
  }

  /** Read-timeout sweeps so far. */
  get sweeps(): number {
    return this.#sweeps;
  }

  get options(): HttpServerOptions {
    return this.#options;
  }

  async #accept(): Promise<void> {
    while (!this.#closing) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch {
        if (this.#closing) return;
        continue; // A connection that failed while being accepted; take the next.
      }
      if (this.#closing) {
        conn.close();
        return;
      }
      conn.setNoDelay(true);
      const connection = new Connection(this, conn);
      this.#connections.add(connection);
      connection.run().finally(() => this.#connections.delete(connection));
    }
  }

  /**
   * Stops accepting, lets requests in flight finish (their responses say `connection: close`),
   * closes idle connections and ends streaming responses, then resolves.
   */
  async shutdown(): Promise<void> {
    if (!this.#closing) {
      this.#closing = true;
      try {
        this.#listener.close();
      } catch { /* already closed */ }
    }
    await this.#accepting;
    for (const connection of this.#connections) connection.onShutdown();
    // The sweeper runs on until every connection ended: one whose client sent part of a
    // request and stopped is closed by it, as at any other time.
    await Promise.all([...this.#connections].map((c) => c.finished));
    clearInterval(this.#sweeper);
  }

  /** What each open connection is doing ("serving PUT /v1/kv/a", ...): for a stop that waits. */
  pending(): string[] {
    return [...this.#connections].map((connection) => connection.doing);
  }
}

class Connection {
  readonly #server: HttpServer;
  readonly #conn: Deno.TcpConn;
  #buffer = new Uint8Array(CONNECTION_BUFFER_BYTES);
  // Free whenever no #writeFast is in flight: a connection answers one request at a time.
  #out: Uint8Array | undefined;
  #start = 0;
  #end = 0;
  /** A read started while a response streams, to notice the client leaving. */
  #pendingRead: Promise<number | null> | undefined;
  /** Waiting for a request head with none of it received: safe to close at shutdown. */
  #idle = false;
  #closed = false;
  /** Unread request bytes may follow: close by lingering (LINGER_MS). */
  #linger = false;
  /** The server's sweep count when a request not yet read whole (head and body) began. */
  #readingSinceSweep: number | undefined;
  /** Ends a streaming response (shutdown). */
  #stopStream: (() => void) | undefined;
  #finished = Promise.withResolvers<void>();
  /** The request being served, between its head and its answer. */
  #serving: RequestHead | undefined;

  constructor(server: HttpServer, conn: Deno.TcpConn) {
    this.#server = server;
    this.#conn = conn;
  }

  get finished(): Promise<void> {
    return this.#finished.promise;
  }

  /** What the connection waits on, for {@link HttpServer.pending} (built only when asked). */
  get doing(): string {
    if (this.#linger) return "closing";
    const head = this.#serving;
    if (head === undefined) return "reading a request head";
    const streaming = this.#stopStream === undefined ? "" : " (streaming)";
    return `serving ${head.method} ${head.target.slice(0, 120)}${streaming}`;
  }

  /** Closes the connection when a request has been arriving for the read timeout. */
  onSweep(sweeps: number): void {
    const since = this.#readingSinceSweep;
    if (since !== undefined && sweeps - since >= READ_TIMEOUT_SWEEPS) this.#close();
  }

  onShutdown(): void {
    if (this.#idle || this.#linger) this.#close();
    this.#stopStream?.();
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }

  async run(): Promise<void> {
    try {
      while (!this.#server.closing) {
        const head = await this.#readHead();
        if (head === undefined) break;
        this.#serving = head;
        this.#server.options.onRequest?.();
        const keepAlive = await this.#serve(head);
        this.#serving = undefined;
        if (!keepAlive) break;
      }
    } catch (error) {
      // A socket error or a client that left: nothing to answer. Anything else is a bug in
      // this module; the connection ends either way, the server goes on.
      if (!isDisconnect(error)) console.error("HTTP connection failed:", error);
    } finally {
      if (this.#linger && !this.#closed) await this.#lingeringClose();
      this.#close();
      this.#finished.resolve();
    }
  }

  async #lingeringClose(): Promise<void> {
    const timer = setTimeout(() => this.#close(), LINGER_MS);
    try {
      await this.#conn.closeWrite();
      let drained = 0;
      while (drained < LINGER_BYTES_MAX) {
        const read: Promise<number | null> = this.#pendingRead ?? this.#conn.read(this.#buffer);
        this.#pendingRead = undefined;
        const n = await read;
        if (n === null) break;
        drained += n;
      }
    } catch {
      /* closed by the timer, or by the client */
    } finally {
      clearTimeout(timer);
    }
  }

  /** Reads more bytes into the buffer; false at end of stream. */
  async #fill(): Promise<boolean> {
    if (this.#pendingRead !== undefined) {
      // Started at #end while a response streamed; #end has not moved since.
      const read = this.#pendingRead;
      this.#pendingRead = undefined;
      const n = await read;
      if (n === null) return false;
      this.#end += n;
      return true;
    }
    if (this.#start === this.#end) this.#start = this.#end = 0;
    if (this.#end === this.#buffer.length) {
      this.#buffer.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    let n: number | null;
    try {
      n = await this.#conn.read(this.#buffer.subarray(this.#end));
    } catch (error) {
      if (this.#closed) return false;
      throw error;
    } finally {
      this.#server.writerBack(this);
    }
    if (n === null) return false;
    this.#end += n;
    return true;
  }

  /** The next request head, or undefined when the client is done (or sent garbage). */
  async #readHead(): Promise<RequestHead | undefined> {
    while (true) {
      if (this.#end > this.#start) {
        let head: RequestHead | undefined;
        try {
          head = parseRequestHead(this.#buffer, this.#start, this.#end);
        } catch (error) {
          if (!(error instanceof HttpParseError)) throw error;
          const code = PARSE_ERROR_CODES[error.status] ?? "bad_request";
          this.#linger = true;
          await this.#writeFast(errorJson(error.status, code, error.message), false, undefined);
          return undefined;
        }
        if (head !== undefined) {
          this.#start += head.headBytes;
          // A body still to come keeps the clock running (BodyReader stops it once read).
          this.#readingSinceSweep = head.contentLength === 0
            ? undefined
            : this.#readingSinceSweep ?? this.#server.sweeps;
          return head;
        }
      }
      this.#idle = this.#end === this.#start;
      if (!this.#idle) this.#readingSinceSweep ??= this.#server.sweeps;
      if (this.#server.closing && this.#idle) return undefined;
      const more = await this.#fill().finally(() => this.#idle = false);
      if (!more) return undefined;
    }
  }

  /** Serves one request; true when the connection may take another. */
  async #serve(head: RequestHead): Promise<boolean> {
    const body = new BodyReader(this, head);
    try {
      const fast = this.#server.options.fastRoute?.({
        method: head.method,
        target: head.target,
        header: (name) => headerOf(head, name),
        body: (bytesMax, what) => body.read(bytesMax, what),
      });
      if (fast !== undefined) {
        const open = await this.#writeFast(await fast, head.keepAlive && body.complete, head);
        if (open) this.#server.writerAnswered(this);
        return open;
      }
      return await this.#serveHandler(head, body);
    } finally {
      // Bytes of a body left unread (a refusal) may still be arriving: close by lingering
      // (bounded by LINGER_MS, not by the read timeout).
      this.#linger = !body.complete;
      this.bodyRead();
    }
  }

  async #serveHandler(head: RequestHead, body: BodyReader): Promise<boolean> {
    let request: Request;
    try {
      const bytes = head.contentLength === 0
        ? null
        : await body.read(HTTP_BODY_BYTES_MAX, "request body");
      // The Host header names the URL's authority only when it is a plain host[:port]: any
      // other text there could move the target's path into the query or the fragment.
      const host = headerOf(head, "host");
      const authority = host !== undefined && HOST_PATTERN.test(host)
        ? host
        : `${this.#server.addr.hostname}:${this.#server.addr.port}`;
      const url = head.target[0] === "/" ? `http://${authority}${head.target}` : head.target;
      const hasBody = head.method !== "GET" && head.method !== "HEAD";
      request = new Request(url, {
        method: head.method,
        headers: head.headers,
        body: hasBody ? bytes as Uint8Array<ArrayBuffer> | null : null,
      });
    } catch (error) {
      if (error instanceof ConnectionGone) throw error;
      // Our own refusals keep their status; anything else is what Request or Headers threw
      // about the request's text (a header value that is not a byte string, a bad URL).
      const response = error instanceof ShanghaiError
        ? errorJson(statusOf(error.code), error.code, error.message)
        : errorJson(400, "bad_request", `Malformed request: ${(error as Error).message}`);
      return await this.#writeFast(response, false, head);
    }
    let response: Response;
    try {
      response = await this.#server.options.handler(request);
    } catch (error) {
      response = this.#server.options.onError(error);
    }
    return await this.#writeResponse(response, head, head.keepAlive && body.complete);
  }

  /** Writes all of `bytes`. */
  async write(bytes: Uint8Array): Promise<void> {
    let at = 0;
    try {
      while (at < bytes.length) at += await this.#conn.write(bytes.subarray(at));
    } catch (error) {
      throw new ConnectionGone("The client went away while being answered", { cause: error });
    }
  }

  #headText(status: number, keepAlive: boolean, head: RequestHead | undefined): string {
    let text = statusLine(status) + `date: ${httpDate()}\r\n`;
    if (!keepAlive) text += "connection: close\r\n";
    else if (head?.minorVersion === 0) text += "connection: keep-alive\r\n";
    return text;
  }

  async #writeFast(
    response: FastResponse,
    keepAlive: boolean,
    head: RequestHead | undefined,
  ): Promise<boolean> {
    const open = keepAlive && !this.#server.closing;
    let text = this.#headText(response.status, open, head) +
      "content-type: application/json\r\n";
    if (response.headers !== undefined) {
      for (const name in response.headers) text += `${name}: ${response.headers[name]}\r\n`;
    }
    text += `content-length: ${utf8Length(response.body)}\r\n\r\n`;
    if (head?.method !== "HEAD") text += response.body;
    this.#out ??= new Uint8Array(RESPONSE_BUFFER_BYTES);
    await this.write(utf8Into(text, this.#out));
    return open;
  }

  async #writeResponse(
    response: Response,
    head: RequestHead,
    keepAlive: boolean,
  ): Promise<boolean> {
    const status = response.status;
    let fields = "";
    for (const [name, value] of response.headers) {
      if (!FRAMING_HEADERS.has(name)) fields += `${name}: ${value}\r\n`;
    }
    const declared = response.headers.get("content-length");
    const withoutBody = head.method === "HEAD" || statusHasNoBody(status);
    if (response.body === null || withoutBody) {
      await response.body?.cancel().catch(() => {});
      const open = keepAlive && !this.#server.closing;
      let text = this.#headText(status, open, head) + fields;
      // A HEAD answer repeats a declared length; hono's HEAD answers have none, so say none.
      if (head.method === "HEAD") {
        if (declared !== null) text += `content-length: ${declared}\r\n`;
      } else if (!statusHasNoBody(status)) text += "content-length: 0\r\n";
      await this.write(encoder.encode(text + "\r\n"));
      return open;
    }
    const reader = response.body.getReader();
    try {
      return await this.#writeBody(reader, status, fields, declared, head, keepAlive);
    } finally {
      reader.releaseLock();
    }
  }

  async #writeBody(
    reader: ReadableStreamDefaultReader<Uint8Array>,
    status: number,
    fields: string,
    declared: string | null,
    head: RequestHead,
    keepAlive: boolean,
  ): Promise<boolean> {
    const firstRead = reader.read();
    if (declared !== null) {
      return await this.#writeDeclared(
        reader,
        status,
        fields,
        declared,
        head,
        keepAlive,
        firstRead,
      );
    }
    // A body that is ready (every body made from a string or bytes) goes out with its length;
    // one that is not (a stream waiting for data, like the change feed) gets its head at once.
    const first = await settledSoon(firstRead);
    if (first === undefined) {
      return await this.#writeStream(reader, status, fields, head, keepAlive, EMPTY, firstRead);
    }
    if (first.done) return await this.#writeWhole(status, fields, head, keepAlive, EMPTY);
    const rest = reader.read();
    if ((await settledSoon(rest))?.done) {
      return await this.#writeWhole(status, fields, head, keepAlive, first.value);
    }
    return await this.#writeStream(reader, status, fields, head, keepAlive, first.value, rest);
  }

  /** A body read whole: its length, then head and body in one write. */
  async #writeWhole(
    status: number,
    fields: string,
    head: RequestHead,
    keepAlive: boolean,
    body: Uint8Array,
  ): Promise<boolean> {
    const open = keepAlive && !this.#server.closing;
    const text = this.#headText(status, open, head) + fields +
      `content-length: ${body.length}\r\n\r\n`;
    await this.#writeCoalesced(encoder.encode(text), body);
    return open;
  }

  /** A declared length (a backup file): streamed as it comes, checked against the length. */
  async #writeDeclared(
    reader: ReadableStreamDefaultReader<Uint8Array>,
    status: number,
    fields: string,
    declared: string,
    head: RequestHead,
    keepAlive: boolean,
    firstRead: Promise<ReadableStreamReadResult<Uint8Array>>,
  ): Promise<boolean> {
    const open = keepAlive && !this.#server.closing;
    const text = this.#headText(status, open, head) + fields +
      `content-length: ${declared}\r\n\r\n`;
    await this.write(encoder.encode(text));
    let sent = 0;
    let next = firstRead;
    while (true) {
      const result = await next;
      if (result.done) break;
      sent += result.value.length;
      await this.write(result.value);
      next = reader.read();
    }
    // A body that broke its own length leaves the client unable to frame the next response.
    return open && sent === Number(declared);
  }

  async #writeCoalesced(head: Uint8Array, body: Uint8Array): Promise<void> {
    if (body.length <= COALESCE_BYTES_MAX) {
      await this.write(concatBytes([head, body]));
    } else {
      await this.write(head);
      await this.write(body);
    }
  }

  /**
   * A body of unknown length: chunked to HTTP/1.1 clients, until the body ends, the client
   * leaves (noticed by a read on the socket) or the server shuts down. HTTP/1.0 clients get
   * the bytes and a closed connection.
   */
  async #writeStream(
    reader: ReadableStreamDefaultReader<Uint8Array>,
    status: number,
    fields: string,
    head: RequestHead,
    keepAlive: boolean,
    firstBytes: Uint8Array,
    rest: Promise<ReadableStreamReadResult<Uint8Array>>,
  ): Promise<boolean> {
    const chunked = head.minorVersion === 1;
    const frame = (bytes: Uint8Array) =>
      chunked
        ? concatBytes([encoder.encode(`${bytes.length.toString(16)}\r\n`), bytes, CRLF])
        : bytes;
    let text = this.#headText(status, chunked && keepAlive, head) + fields;
    text += chunked ? "transfer-encoding: chunked\r\n\r\n" : "\r\n";
    await this.#writeCoalesced(
      encoder.encode(text),
      firstBytes.length > 0 ? frame(firstBytes) : EMPTY,
    );
    const stopped = Promise.withResolvers<"stopped">();
    this.#stopStream = () => stopped.resolve("stopped");
    // A stream that started after the shutdown told the connections to end ends at once.
    if (this.#server.closing) stopped.resolve("stopped");
    if (this.#end < this.#buffer.length) {
      const read = this.#conn.read(this.#buffer.subarray(this.#end)).catch(() => null);
      this.#pendingRead = read;
      read.then((n) => {
        if (n === null) stopped.resolve("stopped");
      });
    }
    try {
      let next: Promise<ReadableStreamReadResult<Uint8Array>> = rest;
      while (true) {
        const result = await Promise.race([next, stopped.promise]);
        if (result === "stopped") {
          await reader.cancel().catch(() => {});
          if (chunked && !this.#closed) await this.write(LAST_CHUNK).catch(() => {});
          return false;
        }
        if (result.done) break;
        if (result.value.length > 0) await this.write(frame(result.value));
        next = reader.read();
      }
      if (chunked) await this.write(LAST_CHUNK);
      return chunked && keepAlive && !this.#server.closing;
    } finally {
      this.#stopStream = undefined;
    }
  }

  // Body reading, for BodyReader: the bytes already in the buffer, then the socket.

  /** Moves up to `max` buffered bytes out; the count. */
  takeBuffered(into: Uint8Array, at: number, max: number): number {
    const n = Math.min(max, this.#end - this.#start);
    into.set(this.#buffer.subarray(this.#start, this.#start + n), at);
    this.#start += n;
    return n;
  }

  get buffered(): number {
    return this.#end - this.#start;
  }

  /** The request's body has been read whole (or will not be read): no read timeout runs. */
  bodyRead(): void {
    this.#readingSinceSweep = undefined;
  }

  /** Reads from the socket straight into `into` (a large body); null at end of stream. */
  async readInto(into: Uint8Array): Promise<number | null> {
    if (this.buffered > 0 || this.#pendingRead !== undefined) {
      if (this.buffered === 0 && !(await this.#fill())) return null;
      return this.takeBuffered(into, 0, into.length);
    }
    return await this.#conn.read(into);
  }

  /** Feeds buffered bytes to a chunked decoder, reading more as needed, until it is done. */
  async decodeChunked(decoder: ChunkedDecoder): Promise<void> {
    while (true) {
      this.#start += decoder.feed(this.#buffer, this.#start, this.#end);
      if (decoder.done) return;
      if (!(await this.#fill())) throw brokenBodyError();
    }
  }
}

const CRLF = new Uint8Array([13, 10]);
const LAST_CHUNK = encoder.encode("0\r\n\r\n");

/** One request's body, read once, on demand. */
class BodyReader {
  readonly #connection: Connection;
  readonly #head: RequestHead;
  #complete: boolean;

  constructor(connection: Connection, head: RequestHead) {
    this.#connection = connection;
    this.#head = head;
    this.#complete = head.contentLength === 0;
  }

  /** Whether the body has been read whole, so the next request's head comes next. */
  get complete(): boolean {
    return this.#complete;
  }

  async read(bytesMax: number, what: string): Promise<Uint8Array> {
    const head = this.#head;
    const length = head.contentLength;
    if (length === 0) return EMPTY;
    if (length > bytesMax) throw new TooLargeError(what, length, bytesMax);
    if (head.expectContinue && this.#connection.buffered === 0) {
      await this.#connection.write(CONTINUE);
    }
    if (length < 0) {
      const decoder = new ChunkedDecoder(bytesMax);
      try {
        await this.#connection.decodeChunked(decoder);
      } catch (error) {
        if (error instanceof HttpParseError) {
          if (error.status === 413) throw new TooLargeError(what, bytesMax + 1, bytesMax);
          throw new InputError("bad_request", `Cannot read request body: ${error.message}`);
        }
        throw error;
      }
      this.#complete = true;
      this.#connection.bodyRead();
      return decoder.body();
    }
    // A slot in a shared slab: a value the key-value view keeps then costs the young
    // generation's scavenges fewer objects to copy (see value_slab.ts).
    const body = takeValueBytes(length);
    let have = this.#connection.takeBuffered(body, 0, length);
    while (have < length) {
      let n: number | null;
      try {
        n = await this.#connection.readInto(body.subarray(have));
      } catch (error) {
        throw brokenBodyError(error);
      }
      if (n === null) throw brokenBodyError();
      have += n;
    }
    this.#complete = true;
    this.#connection.bodyRead();
    return body;
  }
}

const CONTINUE = encoder.encode("HTTP/1.1 100 Continue\r\n\r\n");
