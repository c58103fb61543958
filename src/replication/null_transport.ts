/**
 * A transport with no peers: a node without a cluster (or before the cluster layer starts)
 * still runs replication, so `ack=all` on a one-member cluster is one durable copy and every
 * route behaves the same with or without peers.
 *
 * @module
 */
import type { PeerTransport } from "../cluster/transport.ts";

/** A {@link PeerTransport} that is never connected to anyone. */
export class NullTransport implements PeerTransport {
  constructor(readonly nodeId: string) {}
  send(): boolean {
    return false;
  }
  handle(): void {}
  onPeerUp(): () => void {
    return () => {};
  }
  onPeerDown(): () => void {
    return () => {};
  }
  connectedPeers(): string[] {
    return [];
  }
}
