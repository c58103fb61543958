/**
 * A data directory's identity at start: the node id and cluster id in `node.json` (its format
 * is src/cluster/identity.ts), created at the first start and checked against the configured
 * node id at every start.
 *
 * @module
 */
import { type Identity, readIdentity, writeIdentity } from "../cluster/identity.ts";
import { ConfigError } from "../common/errors.ts";
import { randomHex } from "../common/random.ts";
import { newOrigin } from "../common/origin.ts";

/**
 * Loads the identity, creating it on first start with a new origin (a directory created empty
 * may belong to a node id that wrote before, on a disk that is gone). A configured node id
 * that differs from the stored one is refused: a data directory belongs to one node.
 */
export async function loadOrCreateIdentity(
  dataDir: string,
  configuredNodeId: string | undefined,
  nowMs: number,
): Promise<Identity> {
  await Deno.mkdir(dataDir, { recursive: true });
  const stored = await readIdentity(dataDir);
  if (stored) {
    if (configuredNodeId !== undefined && configuredNodeId !== stored.nodeId) {
      throw new ConfigError(
        "node-id",
        `the data directory ${dataDir} belongs to node "${stored.nodeId}", not "${configuredNodeId}"; use that id or another data directory`,
      );
    }
    return stored;
  }
  const nodeId = configuredNodeId ?? `node-${randomHex(3)}`;
  const identity: Identity = {
    format: 1,
    nodeId,
    clusterId: randomHex(8),
    createdMs: nowMs,
    origin: newOrigin(nodeId),
  };
  await writeIdentity(dataDir, identity);
  return identity;
}
