/**
 * The node-to-node messaging contract. Membership and replication talk to peers only through
 * {@link PeerTransport}; the TCP transport (tcp_transport.ts) implements it for real nodes and
 * the simulated network (sim_network.ts) for seeded in-process tests.
 *
 * @module
 */

/** Node-to-node messaging. Message bodies are plain CBOR-encodable values. */
export interface PeerTransport {
  readonly nodeId: string;
  /** Queues one message to a peer. Returns false (and drops it) when the peer is not connected
   *  or its send queue is over its byte limit: the caller treats false as backpressure/down. */
  send(peerId: string, type: string, body: unknown): boolean;
  /** Registers the handler for one message type (one handler per type). */
  handle(type: string, handler: (from: string, body: unknown) => void): void;
  /** Called when a peer connection is established / lost (after handshake). */
  onPeerUp(listener: (peerId: string) => void): () => void;
  onPeerDown(listener: (peerId: string) => void): () => void;
  /** Peers currently connected. */
  connectedPeers(): string[];
}

/** Handles one message type from a peer. */
export type MessageHandler = (from: string, body: unknown) => void;
/** Hears of one peer coming up or going down. */
export type PeerListener = (peerId: string) => void;

/**
 * The handler table and peer up/down listener sets that every {@link PeerTransport} keeps, in
 * one place: implementations add how messages travel (`send`) and who is connected.
 */
export abstract class PeerTransportBase implements PeerTransport {
  abstract readonly nodeId: string;
  readonly #handlers = new Map<string, MessageHandler>();
  readonly #up = new Set<PeerListener>();
  readonly #down = new Set<PeerListener>();

  abstract send(peerId: string, type: string, body: unknown): boolean;
  abstract connectedPeers(): string[];

  handle(type: string, handler: MessageHandler): void {
    this.#handlers.set(type, handler);
  }

  onPeerUp(listener: PeerListener): () => void {
    this.#up.add(listener);
    return () => this.#up.delete(listener);
  }

  onPeerDown(listener: PeerListener): () => void {
    this.#down.add(listener);
    return () => this.#down.delete(listener);
  }

  /** The handler registered for `type`, if any. */
  protected handlerFor(type: string): MessageHandler | undefined {
    return this.#handlers.get(type);
  }

  /** Tells every up listener; `onError` hears a listener that throws, and the rest still run. */
  protected notifyPeerUp(peerId: string, onError?: (error: unknown) => void): void {
    notify(this.#up, peerId, onError);
  }

  /** Tells every down listener, as {@link notifyPeerUp} does. */
  protected notifyPeerDown(peerId: string, onError?: (error: unknown) => void): void {
    notify(this.#down, peerId, onError);
  }
}

function notify(
  listeners: Set<PeerListener>,
  peerId: string,
  onError: ((error: unknown) => void) | undefined,
): void {
  for (const listener of listeners) {
    if (onError === undefined) {
      listener(peerId);
      continue;
    }
    try {
      listener(peerId);
    } catch (error) {
      onError(error);
    }
  }
}
