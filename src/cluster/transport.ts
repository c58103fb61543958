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
