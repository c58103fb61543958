export interface PeerTransport {
  readonly nodeId: string;
  /** Queues one message to a peer. Returns false (and drops it) when the peer is not connected
   *  or its send queue is over its byte limit: treat false as backpressure/down. */
  send(peerId: string, type: string, body: unknown): boolean;
  handle(type: string, handler: (from: string, body: unknown) => void): void;
  onPeerUp(listener: (peerId: string) => void): () => void;
  onPeerDown(listener: (peerId: string) => void): () => void;
  connectedPeers(): string[];
}
