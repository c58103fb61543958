/**
 * What the two in-process networks of tests/support share: loopback_network.ts (real time,
 * whole nodes) and sim_network.ts (fake clock, seeded faults). Both keep a table of nodes and
 * cut links, and give each node a transport that announces every peer up or down once and
 * hands frames to their handlers while the node is online. When and whether a message
 * arrives, and how a cut is announced, stay with each network.
 *
 * @module
 */
import { linkKey } from "../../src/cluster/sim_network.ts";
import { PeerTransportBase } from "../../src/cluster/transport.ts";

/** One node's end of an {@link InProcessNetwork}. */
export class InProcessTransport extends PeerTransportBase {
  readonly nodeId: string;
  /** Whether the node is on the network; offline, it hears of no peer and receives nothing. */
  online: boolean;
  readonly #network: InProcessNetwork<InProcessTransport>;
  // Invariant: holds exactly the peers announced up and not announced down since.
  readonly #connected = new Set<string>();

  constructor(
    nodeId: string,
    network: InProcessNetwork<InProcessTransport>,
    options: { online: boolean },
  ) {
    super();
    this.nodeId = nodeId;
    this.#network = network;
    this.online = options.online;
  }

  send(peerId: string, type: string, body: unknown): boolean {
    return this.#network.send(this.nodeId, peerId, type, body);
  }

  connectedPeers(): string[] {
    return [...this.#connected];
  }

  /** Whether `peer` was announced up (and not down since). */
  knows(peer: string): boolean {
    return this.#connected.has(peer);
  }

  /** Announces `peer` up, unless it already is or this node is offline. */
  fireUp(peer: string): void {
    if (!this.online || this.#connected.has(peer)) return;
    this.#connected.add(peer);
    this.notifyPeerUp(peer);
  }

  /** Announces `peer` down, unless it is not up. */
  fireDown(peer: string): void {
    if (!this.#connected.delete(peer)) return;
    this.notifyPeerDown(peer);
  }

  /** Delivers a frame as if `from` had sent it (tests inject malformed frames this way). */
  deliver(from: string, type: string, body: unknown): void {
    if (!this.online) return;
    this.handlerFor(type)?.(from, body);
  }
}

/** The nodes of an in-process network and the links cut between them. */
export abstract class InProcessNetwork<T extends InProcessTransport> {
  readonly #transports = new Map<string, T>();
  readonly #cut = new Set<string>();

  /** Sends one message from `from` to `to`; false when they are not connected. */
  abstract send(from: string, to: string, type: string, body: unknown): boolean;

  protected abstract createTransport(nodeId: string): T;

  /** Adds node `nodeId` and returns its transport. */
  add(nodeId: string): T {
    const transport = this.createTransport(nodeId);
    this.#transports.set(nodeId, transport);
    return transport;
  }

  /** Whether a message from a to b can get through now: both online, their link not cut. */
  connected(a: string, b: string): boolean {
    const ta = this.#transports.get(a);
    const tb = this.#transports.get(b);
    return a !== b && ta !== undefined && tb !== undefined && ta.online && tb.online &&
      !this.#cut.has(linkKey(a, b));
  }

  /** The transports, in the order their nodes were added. */
  protected get transports(): ReadonlyMap<string, T> {
    return this.#transports;
  }

  /** Cuts (`cut` true) or restores the link between a and b; announcing it is the caller's. */
  protected setCut(a: string, b: string, cut: boolean): void {
    if (cut) this.#cut.add(linkKey(a, b));
    else this.#cut.delete(linkKey(a, b));
  }

  protected clearCuts(): void {
    this.#cut.clear();
  }
}
