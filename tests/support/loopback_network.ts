/**
 * An in-process network of {@link PeerTransport}s on real time, for tests that run whole
 * nodes in one process: each message is structured-cloned and delivered on a later macrotask,
 * links can be cut and healed, and a test can inject raw frames as if a peer sent them.
 *
 * @module
 */
import { PeerTransportBase } from "../../src/cluster/transport.ts";

export class LoopbackNetwork {
  #transports = new Map<string, LoopbackTransport>();
  #cut = new Set<string>();

  add(nodeId: string): LoopbackTransport {
    const t = new LoopbackTransport(nodeId, this);
    this.#transports.set(nodeId, t);
    return t;
  }

  static #link(a: string, b: string): string {
    return a < b ? `${a}|${b}` : `${b}|${a}`;
  }

  connected(a: string, b: string): boolean {
    const ta = this.#transports.get(a);
    const tb = this.#transports.get(b);
    return a !== b && !!ta?.started && !!tb?.started && !this.#cut.has(LoopbackNetwork.#link(a, b));
  }

  /** Announces every connected pair that is not yet up on both sides. */
  refresh(): void {
    for (const [a, ta] of this.#transports) {
      for (const b of this.#transports.keys()) {
        if (this.connected(a, b)) ta.fireUp(b);
        else ta.fireDown(b);
      }
    }
  }

  cut(a: string, b: string): void {
    this.#cut.add(LoopbackNetwork.#link(a, b));
    this.refresh();
  }

  heal(a: string, b: string): void {
    this.#cut.delete(LoopbackNetwork.#link(a, b));
    this.refresh();
  }

  isolate(id: string): void {
    for (const other of this.#transports.keys()) {
      if (other !== id) this.#cut.add(LoopbackNetwork.#link(id, other));
    }
    this.refresh();
  }

  healAll(): void {
    this.#cut.clear();
    this.refresh();
  }

  send(from: string, to: string, type: string, body: unknown): boolean {
    if (!this.connected(from, to)) return false;
    const copy = structuredClone(body);
    setTimeout(() => {
      if (this.connected(from, to)) this.#transports.get(to)!.deliver(from, type, copy);
    }, 0);
    return true;
  }
}

export class LoopbackTransport extends PeerTransportBase {
  readonly nodeId: string;
  readonly #network: LoopbackNetwork;
  started = false;
  #connected = new Set<string>();

  constructor(nodeId: string, network: LoopbackNetwork) {
    super();
    this.nodeId = nodeId;
    this.#network = network;
  }

  /** Joins the network (call once the node using it is up). */
  start(): void {
    this.started = true;
    this.#network.refresh();
  }

  /** Leaves the network, as a stopped or killed node. */
  stop(): void {
    this.started = false;
    this.#network.refresh();
  }

  send(peerId: string, type: string, body: unknown): boolean {
    return this.#network.send(this.nodeId, peerId, type, body);
  }

  connectedPeers(): string[] {
    return [...this.#connected];
  }

  fireUp(peer: string): void {
    if (this.#connected.has(peer)) return;
    this.#connected.add(peer);
    this.notifyPeerUp(peer);
  }

  fireDown(peer: string): void {
    if (!this.#connected.delete(peer)) return;
    this.notifyPeerDown(peer);
  }

  /** Delivers a frame as if `from` had sent it (tests inject malformed frames this way). */
  deliver(from: string, type: string, body: unknown): void {
    if (!this.started) return;
    this.handlerFor(type)?.(from, body);
  }
}
