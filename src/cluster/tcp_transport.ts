/**
 * The TCP {@link PeerTransport}: one listening socket on the node port, one connection per
 * peer, frames as in frame.ts.
 *
 * Handshake (both directions are frames of protocol version 1):
 * 1. The dialer sends `hello {cluster, node, version, session, address, http, fresh}`.
 * 2. The acceptor checks, in order, and answers `refuse {code, reason}` (then closes) or
 *    `welcome` with its own hello fields:
 *    | check                                   | refusal code  |
 *    |-----------------------------------------|---------------|
 *    | frame or hello version != ours           | version       |
 *    | the node id is ours                      | duplicate_id  |
 *    | a live connection holds that id already  | id_in_use     |
 *    | cluster ids differ and neither may adopt | cluster       |
 * 3. Cluster ids that differ are reconciled only for a fresh node: its data directory holds no
 *    data, it knows no other member yet, and it is joining (a node started without seeds founds
 *    its cluster and keeps its id, so joiners racing to a fresh founder all adopt the founder's). It adopts the other's cluster id and persists it;
 *    when both are fresh, the larger cluster id adopts the smaller, so fresh nodes started
 *    together end in one cluster whatever order they dial in. A node that holds data, or is
 *    already in a cluster with other members, never changes cluster.
 * Until the handshake is done a connection may send only HANDSHAKE_FRAME_BYTES_MAX-byte frames
 * and must finish within HANDSHAKE_TIMEOUT_MS, so garbage on the port costs a few KiB and
 * seconds. Any malformed, oversize or truncated frame closes that connection with a logged
 * reason; the node keeps serving.
 *
 * Two nodes that dial each other at once end with two connections; both keep the one dialed
 * by the smaller node id, so they agree without talking. A hello from a known node with a new
 * session id is a restart: it replaces the old connection if that one has gone silent, and is
 * refused as a duplicate id while the old one is still live.
 *
 * Links are watched (keepaliveMs, linkTimeoutMs): an idle link carries `link.ping`, and a link
 * nothing arrived on for the timeout is dropped, so a path that silently loses packets reads as
 * the peer being down instead of a connection TCP keeps retrying for minutes.
 *
 * @module
 */
import {
  FRAME_BYTES_MAX,
  HANDSHAKE_FRAME_BYTES_MAX,
  HANDSHAKE_TIMEOUT_MS,
  PEER_CONNECTIONS_MAX,
  PEER_READ_BUFFER_BYTES,
  PEER_SEND_QUEUE_BYTES_MAX,
} from "../common/limits.ts";
import { copyParts } from "../common/bytes.ts";
import { randomHex } from "../common/random.ts";
import type { Logger } from "../telemetry/log.ts";
import { encodeFrame, type Frame, FrameDecoder, PROTOCOL_VERSION, ProtocolError } from "./frame.ts";
import { PeerTransportBase } from "./transport.ts";

export const HANDSHAKE = { hello: "hello", welcome: "welcome", refuse: "refuse" } as const;
/** The keepalive frame (empty body); the transport answers nothing and hands it to no one. */
export const LINK_PING = "link.ping";

/** A connection open this long is "settled": a later duplicate to the same peer loses. */
const DUPLICATE_SETTLED_MS = 1000;
/**
 * Frames queued behind a write in flight go out together, up to this many bytes per write:
 * each awaited socket write is a hand-off to another thread, and under replication load a
 * connection queues acks and batches faster than one write per frame drains them.
 */
const WRITE_COALESCE_BYTES_MAX = 256 * 1024;
/** Microtask turns a connection's first write waits for more frames (see Connection.#flush). */
const WRITE_COALESCE_TICKS = 4;

/**
 * Why a handshake was refused. `id_in_use`: another process of that node id still has a live
 * connection here, a second node with the same id, or the node's own previous process before
 * this end noticed it is gone (its dialer retries for a while: node_cluster.ts).
 */
export type RefusalCode = "version" | "duplicate_id" | "id_in_use" | "cluster" | "protocol";

/** What each side tells the other in the handshake. */
export interface Hello {
  cluster: string;
  node: string;
  version: number;
  session: string;
  address: string;
  http: string;
  fresh: boolean;
  /** Knows no other member yet. */
  alone: boolean;
}

export type DialResult =
  | { ok: true; peerId: string }
  | { ok: false; refused: true; code: RefusalCode; reason: string }
  | { ok: false; refused: false; reason: string };

export interface TcpTransportOptions {
  nodeId: string;
  /** Current cluster id (it changes when a fresh node adopts one). */
  clusterId: () => string;
  /** Whether this node may adopt another cluster id: its data directory holds no data. */
  fresh: () => boolean;
  /**
   * Whether this node founded its cluster (started without seeds, never told to join): a
   * founder keeps its cluster id even while fresh, so joiners racing to it all adopt its id.
   */
  founder?: () => boolean;
  /** Whether this node knows no other member yet (it adopts before one that does). */
  alone?: () => boolean;
  /** Persists an adopted cluster id; resolves once durable. */
  adoptClusterId: (clusterId: string) => Promise<void>;
  hostname: string;
  port: number;
  /** HTTP address to tell peers. */
  httpAddress: () => string;
  logger: Logger;
  /** Monotonic ms, for silence checks. */
  monoMs?: () => number;
  sendQueueBytesMax?: number;
  frameBytesMax?: number;
  handshakeTimeoutMs?: number;
  /** Treat an existing connection as stale after this much silence (restart vs duplicate). */
  staleAfterMs?: number;
  /**
   * Send a `link.ping` on an open connection nothing was queued on for this long (default:
   * off). Peers then hear from every live link at least this often, even an idle one.
   */
  keepaliveMs?: number;
  /**
   * Drop an open connection nothing was received on for this long (default: off; needs
   * keepaliveMs well below it). A link whose packets vanish (a cut cable, a firewall that
   * drops) never errors: TCP retries for about 15 minutes. Dropped, it reads as the peer
   * being down, so replication stops waiting on it, and the redial opens a fresh connection
   * once the path is back instead of waiting out TCP's retransmission backoff.
   */
  linkTimeoutMs?: number;
  /** Called for each link dropped for silence (metrics). */
  onLinkDropped?: (peerId: string, silentMs: number) => void;
}

export interface TransportStats {
  connections: number;
  bytesSent: number;
  bytesReceived: number;
  /** Frame bytes by the type's first word ("cluster", "repl", "hello", ...). */
  byKind: Record<string, { sent: number; received: number }>;
  refused: number;
  protocolErrors: number;
  /** Open links dropped because nothing arrived on them for linkTimeoutMs. */
  linksDropped: number;
}

const ID_CHARS_MAX = 64;
const ADDRESS_CHARS_MAX = 300;

function parseHello(body: unknown): Hello | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const b = body as Record<string, unknown>;
  const str = (v: unknown, max: number) => typeof v === "string" && v.length > 0 && v.length <= max;
  if (
    !str(b.cluster, ID_CHARS_MAX) || !str(b.node, ID_CHARS_MAX) || !str(b.session, ID_CHARS_MAX)
  ) return undefined;
  if (
    !str(b.address, ADDRESS_CHARS_MAX) || typeof b.http !== "string" ||
    b.http.length > ADDRESS_CHARS_MAX
  ) return undefined;
  if (
    !Number.isSafeInteger(b.version) || typeof b.fresh !== "boolean" || typeof b.alone !== "boolean"
  ) return undefined;
  return b as unknown as Hello;
}

/** Only a node with no data that knows no other member may adopt another cluster id. */
function mayAdopt(side: { fresh: boolean; alone?: boolean }): boolean {
  return side.fresh && side.alone !== false;
}

/** Who adopts whose cluster id when two differ (see the module doc); the same on both sides. */
export function reconcileClusters(
  mine: { cluster: string; fresh: boolean; alone?: boolean },
  theirs: { cluster: string; fresh: boolean; alone?: boolean },
): "same" | "adopt" | "they_adopt" | "refuse" {
  if (mine.cluster === theirs.cluster) return "same";
  const a = mayAdopt(mine);
  const b = mayAdopt(theirs);
  if (!a && !b) return "refuse";
  if (a !== b) return a ? "adopt" : "they_adopt";
  return mine.cluster > theirs.cluster ? "adopt" : "they_adopt";
}

class Connection {
  readonly conn: Deno.TcpConn;
  readonly remote: string;
  readonly outbound: boolean;
  readonly decoder = new FrameDecoder(HANDSHAKE_FRAME_BYTES_MAX);
  peer: Hello | undefined;
  open = false;
  /** We refused its handshake: nothing more it sends is read. */
  refused = false;
  closed = false;
  lastReceivedMs = 0;
  lastQueuedMs = 0;
  openedMs = 0;
  #queue: Uint8Array[] = [];
  #joined: Uint8Array | undefined;
  queuedBytes = 0;
  #writing = false;
  readonly #onWriteError: (error: unknown) => void;

  constructor(conn: Deno.TcpConn, outbound: boolean, onWriteError: (error: unknown) => void) {
    this.conn = conn;
    this.outbound = outbound;
    const addr = conn.remoteAddr as Deno.NetAddr;
    this.remote = `${addr.hostname}:${addr.port}`;
    this.#onWriteError = onWriteError;
  }

  enqueue(frame: Uint8Array, nowMs: number): void {
    this.lastQueuedMs = nowMs;
    this.#queue.push(frame);
    this.queuedBytes += frame.length;
    if (!this.#writing) this.#flush();
  }

  async #flush(): Promise<void> {
    this.#writing = true;
    try {
      // The first write waits a few microtasks, so the frames this turn still sends join it:
      // right after a WAL batch is durable a node acks a peer's batch and ships its own new
      // entries to that same peer, a microtask or two apart. Each socket write wakes the
      // reader on the other end, which costs about as much again as the write.
      for (let tick = 0; tick < WRITE_COALESCE_TICKS; tick++) await Promise.resolve();
      while (this.#queue.length > 0 && !this.closed) {
        let count = 1;
        let bytes = this.#queue[0].length;
        while (
          count < this.#queue.length &&
          bytes + this.#queue[count].length <= WRITE_COALESCE_BYTES_MAX
        ) {
          bytes += this.#queue[count].length;
          count++;
        }
        const parts = this.#queue.splice(0, count);
        let chunk = parts[0];
        if (count > 1) {
          // Joined in one buffer kept for the connection's life: a new one per write was fresh
          // memory each time (a leader's batches are about 100 KiB), and a page's first touch
          // costs about 12 µs here. The write is awaited before the buffer is filled again.
          this.#joined ??= new Uint8Array(WRITE_COALESCE_BYTES_MAX);
          chunk = this.#joined.subarray(0, copyParts(parts, this.#joined));
        }
        let at = 0;
        while (at < chunk.length) at += await this.conn.write(chunk.subarray(at));
        this.queuedBytes -= bytes;
      }
    } catch (error) {
      this.#onWriteError(error);
    } finally {
      this.#writing = false;
      for (const resolve of this.#flushWaiters.splice(0)) resolve();
    }
  }

  #flushWaiters: (() => void)[] = [];

  /** Resolves once everything queued is written (or `maxMs` passed, for a peer not reading). */
  flushed(maxMs: number): Promise<void> {
    if (!this.#writing && this.#queue.length === 0) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#flushWaiters.push(resolve);
    const timer = setTimeout(resolve, maxMs);
    return promise.finally(() => clearTimeout(timer));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.open = false;
    this.#queue = [];
    this.queuedBytes = 0;
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }
}

export class TcpTransport extends PeerTransportBase {
  readonly nodeId: string;
  readonly session = randomHex(8);
  readonly #options: TcpTransportOptions;
  readonly #logger: Logger;
  readonly #monoMs: () => number;
  #listener: Deno.TcpListener | undefined;
  #connections = new Set<Connection>();
  #active = new Map<string, Connection>();
  #closed = false;
  #adopting = false;
  #linkTimer: ReturnType<typeof setInterval> | undefined;
  #lastLinkCheckMs = 0;
  #stats: TransportStats = {
    connections: 0,
    bytesSent: 0,
    bytesReceived: 0,
    byKind: {},
    refused: 0,
    protocolErrors: 0,
    linksDropped: 0,
  };

  private constructor(options: TcpTransportOptions) {
    super();
    this.nodeId = options.nodeId;
    this.#options = options;
    this.#logger = options.logger;
    this.#monoMs = options.monoMs ?? (() => performance.now());
  }

  /** Listens on the node port and starts accepting peers. */
  static listen(options: TcpTransportOptions): TcpTransport {
    const transport = new TcpTransport(options);
    transport.#listener = Deno.listen({
      hostname: options.hostname,
      port: options.port,
      transport: "tcp",
    });
    transport.#acceptLoop();
    transport.#startLinkChecks();
    return transport;
  }

  #startLinkChecks(): void {
    const { keepaliveMs, linkTimeoutMs } = this.#options;
    const everyMs = Math.min(keepaliveMs ?? Infinity, linkTimeoutMs ?? Infinity) / 2;
    if (!Number.isFinite(everyMs)) return;
    this.#lastLinkCheckMs = this.#monoMs();
    this.#linkTimer = setInterval(() => this.#checkLinks(everyMs), everyMs);
  }

  /**
   * Pings links nothing was queued on for keepaliveMs and drops links nothing arrived on for
   * linkTimeoutMs. Silence counts only time this node ran: when this check itself comes late
   * (the event loop was blocked, or the process stopped), frames that arrived meanwhile still
   * wait to be read, so the lateness is forgiven rather than dropping every link at once.
   */
  #checkLinks(everyMs: number): void {
    const now = this.#monoMs();
    const lateMs = now - this.#lastLinkCheckMs - everyMs;
    this.#lastLinkCheckMs = now;
    const { keepaliveMs, linkTimeoutMs } = this.#options;
    for (const c of [...this.#connections]) {
      if (!c.open || c.closed) continue;
      if (lateMs > 0) c.lastReceivedMs = Math.min(now, c.lastReceivedMs + lateMs);
      const silentMs = now - c.lastReceivedMs;
      if (linkTimeoutMs !== undefined && silentMs >= linkTimeoutMs) {
        this.#logger.warn(
          "Dropped a silent peer link: nothing arrived on it in time; redialing. If this repeats, check the network path between the two nodes",
          { peer: c.peer?.node, remote: c.remote, silentMs: Math.round(silentMs), linkTimeoutMs },
        );
        this.#stats.linksDropped++;
        this.#drop(c);
        if (c.peer) this.#options.onLinkDropped?.(c.peer.node, silentMs);
        continue;
      }
      if (keepaliveMs !== undefined && now - c.lastQueuedMs >= keepaliveMs) {
        this.#sendRaw(c, LINK_PING, null);
      }
    }
  }

  /** Whether an open connection missed the pings a live link would have brought. */
  #silent(c: Connection): boolean {
    const keepaliveMs = this.#options.keepaliveMs;
    return keepaliveMs !== undefined && this.#monoMs() - c.lastReceivedMs > 2 * keepaliveMs;
  }

  /** The bound port (the real one when configured as 0). */
  get port(): number {
    return (this.#listener!.addr as Deno.NetAddr).port;
  }

  /** host:port peers dial to reach this node. */
  get address(): string {
    return `${this.#options.hostname}:${this.port}`;
  }

  stats(): TransportStats {
    return {
      ...this.#stats,
      connections: this.#connections.size,
      byKind: structuredClone(this.#stats.byKind),
    };
  }

  /** The advertised node-port and HTTP addresses of a connected peer. */
  peerInfo(peerId: string): { address: string; httpAddress: string } | undefined {
    const c = this.#active.get(peerId);
    return c?.peer ? { address: c.peer.address, httpAddress: c.peer.http } : undefined;
  }

  /** See {@link PeerTransport.send}; a body over the frame limit throws TooLargeError. */
  send(peerId: string, type: string, body: unknown): boolean {
    const c = this.#active.get(peerId);
    if (!c || !c.open) return false;
    const frame = encodeFrame(type, body, {
      bytesMax: this.#options.frameBytesMax ?? FRAME_BYTES_MAX,
    });
    if (
      c.queuedBytes + frame.length > (this.#options.sendQueueBytesMax ?? PEER_SEND_QUEUE_BYTES_MAX)
    ) return false;
    this.#count(type, frame.length, "sent");
    c.enqueue(frame, this.#monoMs());
    return true;
  }

  connectedPeers(): string[] {
    return [...this.#active.keys()];
  }

  /** Connects to `address` and runs the handshake. Never throws. */
  async dial(
    address: string,
    timeoutMs: number = this.#options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS,
  ): Promise<DialResult> {
    if (this.#closed) return { ok: false, refused: false, reason: "transport closed" };
    const match = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(address);
    if (!match) {
      return { ok: false, refused: false, reason: `${JSON.stringify(address)} is not host:port` };
    }
    if (this.#connections.size >= PEER_CONNECTIONS_MAX) {
      return {
        ok: false,
        refused: false,
        reason: `already ${this.#connections.size} connections open`,
      };
    }
    let conn: Deno.TcpConn;
    const timer = AbortSignal.timeout(timeoutMs);
    try {
      conn = await Deno.connect({
        hostname: match[1].replace(/^\[|\]$/g, ""),
        port: Number(match[2]),
        signal: timer,
      });
    } catch (error) {
      return {
        ok: false,
        refused: false,
        reason: `cannot connect to ${address}: ${(error as Error).message}`,
      };
    }
    const c = this.#adopt(conn, true);
    if (!c) return { ok: false, refused: false, reason: "transport closed" };
    const reply = Promise.withResolvers<DialResult>();
    const deadline = setTimeout(() => {
      reply.resolve({
        ok: false,
        refused: false,
        reason: `no handshake answer from ${address} within ${timeoutMs} ms`,
      });
      c.close();
    }, timeoutMs);
    this.#readLoop(c, reply);
    this.#sendRaw(c, HANDSHAKE.hello, this.#hello());
    const result = await reply.promise;
    clearTimeout(deadline);
    return result;
  }

  /** Closes the listener and every connection. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#linkTimer);
    try {
      this.#listener?.close();
    } catch { /* already closed */ }
    for (const c of [...this.#connections]) this.#drop(c);
  }

  /** Closes every connection (they are redialed): used after adopting a new cluster id. */
  resetConnections(): void {
    for (const c of [...this.#connections]) this.#drop(c);
  }

  #why(peer: Hello): string {
    const theirs = !peer.fresh
      ? "holds data or founded its cluster"
      : !peer.alone
      ? "already has members"
      : "may adopt";
    const mine = !this.#options.fresh()
      ? "holds data"
      : !this.#alone()
      ? "already has members"
      : this.#options.founder?.()
      ? "founded its cluster"
      : "may adopt";
    return `it ${theirs}, this node ${mine}`;
  }

  #reconcileSide(): { cluster: string; fresh: boolean; alone: boolean } {
    return {
      cluster: this.#options.clusterId(),
      fresh: this.#mayAdoptFresh(),
      alone: this.#alone(),
    };
  }

  /**
   * Alone: no member known, no peer connected, no adoption under way. A node that has even
   * one handshaken peer keeps its cluster id, so two handshakes racing at a fresh seed cannot
   * move it to another id after the first peer adopted the old one.
   */
  #alone(): boolean {
    return (this.#options.alone?.() ?? true) && this.#active.size === 0 && !this.#adopting;
  }

  #hello(): Hello {
    return {
      cluster: this.#options.clusterId(),
      node: this.nodeId,
      version: PROTOCOL_VERSION,
      session: this.session,
      address: this.address,
      http: this.#options.httpAddress(),
      fresh: this.#mayAdoptFresh(),
      alone: this.#alone(),
    };
  }

  /** Fresh in the handshake's sense: no data, and not the founder of its cluster. */
  #mayAdoptFresh(): boolean {
    return this.#options.fresh() && !(this.#options.founder?.() ?? false);
  }

  async #acceptLoop(): Promise<void> {
    const listener = this.#listener!;
    try {
      for await (const conn of listener) {
        if (this.#connections.size >= PEER_CONNECTIONS_MAX) {
          this.#logger.warn("Refused node-port connection: too many connections", {
            limit: PEER_CONNECTIONS_MAX,
          });
          try {
            conn.close();
          } catch { /* gone */ }
          continue;
        }
        const c = this.#adopt(conn, false);
        if (!c) continue;
        const timeoutMs = this.#options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
        const timer = setTimeout(() => {
          if (!c.open && !c.closed) {
            this.#logger.warn("Closed node-port connection: no handshake in time", {
              remote: c.remote,
              timeoutMs,
            });
            this.#drop(c);
          }
        }, timeoutMs);
        this.#readLoop(c, undefined).finally(() => clearTimeout(timer));
      }
    } catch (error) {
      if (!this.#closed) this.#logger.error("Node-port listener stopped", { error: String(error) });
    }
  }

  #adopt(conn: Deno.TcpConn, outbound: boolean): Connection | undefined {
    if (this.#closed) {
      try {
        conn.close();
      } catch { /* gone */ }
      return undefined;
    }
    try {
      conn.setNoDelay(true);
    } catch { /* not fatal */ }
    const c: Connection = new Connection(conn, outbound, (error) => {
      if (!c.closed) {
        this.#logger.debug("Peer write failed", { remote: c.remote, error: String(error) });
      }
      this.#drop(c);
    });
    this.#connections.add(c);
    return c;
  }

  async #readLoop(
    c: Connection,
    dial: PromiseWithResolvers<DialResult> | undefined,
  ): Promise<void> {
    const buffer = new Uint8Array(PEER_READ_BUFFER_BYTES);
    try {
      while (!c.closed) {
        // The rest of a large frame is read straight into its own buffer; everything else
        // into this connection's buffer, which the decoder copies what it keeps out of.
        const spare = c.decoder.spare();
        const direct = spare !== undefined && spare.length >= buffer.length;
        const n = await c.conn.read(direct ? spare : buffer);
        if (n === null) {
          c.decoder.end();
          break;
        }
        this.#stats.bytesReceived += n;
        const frames = direct ? c.decoder.filled(n) : c.decoder.push(buffer.subarray(0, n));
        for (const frame of frames) {
          if (c.closed || c.refused) break;
          if (!c.open) await this.#onHandshakeFrame(c, frame, dial);
          else this.#onFrame(c, frame);
        }
      }
    } catch (error) {
      if (!c.closed) {
        if (error instanceof ProtocolError) {
          this.#stats.protocolErrors++;
          this.#logger.warn("Refused frame from peer", {
            remote: c.remote,
            peer: c.peer?.node,
            reason: error.message,
          });
          if (!c.open) {
            this.#sendRaw(c, HANDSHAKE.refuse, { code: "protocol", reason: error.message });
          }
        } else {
          this.#logger.debug("Peer connection failed", { remote: c.remote, error: String(error) });
        }
      }
    } finally {
      dial?.resolve({
        ok: false,
        refused: false,
        reason: `connection to ${c.remote} closed during the handshake`,
      });
      // Let a refusal frame go out before the socket closes.
      await c.flushed(200);
      this.#drop(c);
    }
  }

  async #onHandshakeFrame(
    c: Connection,
    frame: Frame,
    dial: PromiseWithResolvers<DialResult> | undefined,
  ): Promise<void> {
    if (dial) {
      if (frame.type === HANDSHAKE.refuse) {
        const b = (frame.body ?? {}) as { code?: unknown; reason?: unknown };
        const code = (["version", "duplicate_id", "id_in_use", "cluster", "protocol"]
            .includes(String(b.code))
          ? b.code
          : "protocol") as RefusalCode;
        const reason = typeof b.reason === "string" ? b.reason.slice(0, 500) : "no reason given";
        this.#logger.warn("Peer refused our handshake", { remote: c.remote, code, reason });
        dial.resolve({ ok: false, refused: true, code, reason });
        c.close();
        return;
      }
      if (frame.type !== HANDSHAKE.welcome) {
        throw new ProtocolError(`Cannot handshake: expected welcome, got "${frame.type}"`);
      }
    } else if (frame.type !== HANDSHAKE.hello) {
      throw new ProtocolError(`Cannot handshake: expected hello, got "${frame.type}"`);
    }
    const peer = parseHello(frame.body);
    if (!peer) throw new ProtocolError(`Cannot handshake: malformed ${frame.type}`);
    if (this.#adopting) {
      // Our cluster id is changing: any decision now would use the old one. Hang up; the peer
      // dials again (a closed handshake is not a refusal) and meets the new id.
      this.#logger.debug("Closed a handshake during cluster id adoption", {
        remote: c.remote,
        peer: peer.node,
      });
      dial?.resolve({
        ok: false,
        refused: false,
        reason: "the peer was changing its cluster id; retry",
      });
      this.#drop(c);
      return;
    }
    const refusal = this.#check(c, frame.version, peer);
    if (refusal) {
      this.#stats.refused++;
      this.#logger.warn(dial ? "Refused peer's welcome" : "Refused peer", {
        remote: c.remote,
        peer: peer.node,
        code: refusal.code,
        reason: refusal.reason,
      });
      c.refused = true;
      if (dial) {
        dial.resolve({ ok: false, refused: true, ...refusal });
        c.close();
      } else {
        this.#sendRaw(c, HANDSHAKE.refuse, refusal);
        c.flushed(200).then(() => this.#drop(c));
      }
      return;
    }
    const mine = this.#reconcileSide();
    if (reconcileClusters(mine, peer) === "adopt") {
      this.#logger.info(
        "Adopting the cluster id of the cluster joined: this data directory holds no data yet",
        {
          previousClusterId: mine.cluster,
          clusterId: peer.cluster,
          via: peer.node,
        },
      );
      this.#adopting = true;
      try {
        await this.#options.adoptClusterId(peer.cluster);
      } finally {
        this.#adopting = false;
      }
      // Connections made under the old cluster id are redialed under the new one.
      for (const other of [...this.#connections]) if (other !== c) this.#drop(other);
    }
    if (!dial) this.#sendRaw(c, HANDSHAKE.welcome, this.#hello());
    c.peer = peer;
    c.open = true;
    c.lastReceivedMs = this.#monoMs();
    c.openedMs = c.lastReceivedMs;
    c.decoder.bytesMax = this.#options.frameBytesMax ?? FRAME_BYTES_MAX;
    this.#register(c);
    dial?.resolve({ ok: true, peerId: peer.node });
  }

  #check(
    c: Connection,
    frameVersion: number,
    peer: Hello,
  ): { code: RefusalCode; reason: string } | undefined {
    if (frameVersion !== PROTOCOL_VERSION || peer.version !== PROTOCOL_VERSION) {
      return {
        code: "version",
        reason:
          `Cannot accept node "${peer.node}": it speaks node protocol version ${peer.version}, this node speaks ${PROTOCOL_VERSION}`,
      };
    }
    if (peer.node === this.nodeId) {
      return {
        code: "duplicate_id",
        reason: peer.session === this.session
          ? `Cannot connect node "${peer.node}" to itself at ${peer.address}`
          : `Cannot accept node "${peer.node}" from ${c.remote}: node id "${peer.node}" is this node's own id; give the new node another --node-id`,
      };
    }
    const existing = this.#active.get(peer.node);
    if (existing && existing !== c && existing.peer && existing.peer.session !== peer.session) {
      const silentMs = this.#monoMs() - existing.lastReceivedMs;
      if (silentMs < (this.#options.staleAfterMs ?? HANDSHAKE_TIMEOUT_MS)) {
        return {
          code: "id_in_use",
          reason:
            `Cannot accept node "${peer.node}" from ${c.remote}: node id "${peer.node}" is in use by a live member at ${existing.peer.address}; give the new node another --node-id`,
        };
      }
    }
    const verdict = reconcileClusters(this.#reconcileSide(), peer);
    if (verdict === "refuse") {
      return {
        code: "cluster",
        reason:
          `Cannot accept node "${peer.node}": it belongs to cluster ${peer.cluster} and this node to cluster ${this.#options.clusterId()}, and neither may change cluster (${
            this.#why(peer)
          }); start it with an empty data directory to join this cluster`,
      };
    }
    return undefined;
  }

  #register(c: Connection): void {
    const id = c.peer!.node;
    const existing = this.#active.get(id);
    if (!existing) {
      this.#active.set(id, c);
      this.notifyPeerUp(id, (error) => this.#listenerFailed(id, error));
      return;
    }
    if (existing.peer!.session !== c.peer!.session || this.#silent(existing)) {
      // The peer restarted (the old connection went silent), or it dropped a link that went
      // silent and dialed anew while this end had not noticed yet: replace it.
      this.#active.set(id, c);
      existing.close();
      this.#connections.delete(existing);
      this.notifyPeerDown(id, (error) => this.#listenerFailed(id, error));
      this.notifyPeerUp(id, (error) => this.#listenerFailed(id, error));
      return;
    }
    // Two connections to one live peer. A settled one (open for a while) is kept: the new one
    // came from dialing an address that turned out to be this peer's. Otherwise both sides
    // dialed at once: keep the connection dialed by the smaller node id, on both ends.
    const settled = this.#monoMs() - existing.openedMs > DUPLICATE_SETTLED_MS;
    const dialerOf = (x: Connection) => x.outbound ? this.nodeId : id;
    const keepNew = !settled && dialerOf(c) < dialerOf(existing);
    const loser = keepNew ? existing : c;
    if (keepNew) this.#active.set(id, c);
    loser.close();
    this.#connections.delete(loser);
  }

  #onFrame(c: Connection, frame: Frame): void {
    if (frame.version !== PROTOCOL_VERSION) {
      throw new ProtocolError(
        `Cannot read frame: protocol version ${frame.version}, expected ${PROTOCOL_VERSION}`,
      );
    }
    c.lastReceivedMs = this.#monoMs();
    const from = c.peer!.node;
    if (this.#active.get(from) !== c) return; // A losing duplicate: ignore what it still sends.
    this.#count(frame.type, frame.bytes ?? 0, "received");
    if (frame.type === LINK_PING) return;
    const handler = this.handlerFor(frame.type);
    if (!handler) {
      this.#logger.debug("No handler for peer message", { peer: from, type: frame.type });
      return;
    }
    try {
      handler(from, frame.body);
    } catch (error) {
      this.#logger.error("Peer message handler failed", {
        peer: from,
        type: frame.type,
        error: String((error as Error)?.stack ?? error),
      });
    }
  }

  #sendRaw(c: Connection, type: string, body: unknown): void {
    const frame = encodeFrame(type, body, { bytesMax: HANDSHAKE_FRAME_BYTES_MAX });
    this.#count(type, frame.length, "sent");
    c.enqueue(frame, this.#monoMs());
  }

  #drop(c: Connection): void {
    const wasActive = c.peer !== undefined && this.#active.get(c.peer.node) === c;
    c.close();
    this.#connections.delete(c);
    if (wasActive) {
      this.#active.delete(c.peer!.node);
      this.notifyPeerDown(c.peer!.node, (error) => this.#listenerFailed(c.peer!.node, error));
    }
  }

  #count(type: string, bytes: number, direction: "sent" | "received"): void {
    const kind = type.split(".")[0];
    const entry = this.#stats.byKind[kind] ??= { sent: 0, received: 0 };
    if (direction === "sent") {
      entry.sent += bytes;
      this.#stats.bytesSent += bytes;
    } else {
      entry.received += bytes;
    }
  }

  #listenerFailed(peerId: string, error: unknown): void {
    this.#logger.error("Peer listener failed", { peer: peerId, error: String(error) });
  }
}
