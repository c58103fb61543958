/**
 * A node-port transport a test drives itself, dialing a real node under any node id: an
 * intruder sending hand-made frames, or a stand-in for a node's previous process.
 *
 * @module
 */
import { TcpTransport, type TcpTransportOptions } from "../../src/cluster/tcp_transport.ts";
import { silentLogger } from "../../src/telemetry/log.ts";

/**
 * A TcpTransport on 127.0.0.1 for node `nodeId` of cluster `clusterId`, holding data and
 * knowing members (so it never adopts another cluster id); `options` add to or override that.
 * The caller closes it.
 */
export function standInPeer(
  nodeId: string,
  clusterId: string,
  options: Partial<TcpTransportOptions> = {},
): TcpTransport {
  return TcpTransport.listen({
    nodeId,
    clusterId: () => clusterId,
    fresh: () => false,
    alone: () => false,
    adoptClusterId: () => Promise.resolve(),
    hostname: "127.0.0.1",
    port: 0,
    httpAddress: () => "127.0.0.1:1",
    logger: silentLogger,
    ...options,
  });
}
