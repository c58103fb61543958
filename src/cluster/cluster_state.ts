/**
 * What a node keeps about its cluster in its data directory, `cluster.json`: its incarnation
 * (bumped and made durable at every start, so a restarted node always comes back with a
 * higher one) and the members it knew, so it finds them again after a restart even when
 * none of them is in its --join list. Also: adopting the cluster id of a cluster joined.
 *
 * @module
 */
import { ConfigError } from "../common/errors.ts";
import { type Identity, IDENTITY_FILE, writeJsonDurably } from "../node/identity.ts";
import { readTextIfExists } from "../storage/durable_fs.ts";

export const CLUSTER_STATE_FILE = "cluster.json";

export interface KnownMember {
  id: string;
  address: string;
  httpAddress: string;
}

export interface ClusterState {
  format: 1;
  incarnation: number;
  members: KnownMember[];
}

export async function readClusterState(dataDir: string): Promise<ClusterState | undefined> {
  const path = `${dataDir}/${CLUSTER_STATE_FILE}`;
  const text = await readTextIfExists(path);
  if (text === undefined) return undefined;
  try {
    const parsed = JSON.parse(text) as ClusterState;
    if (
      parsed.format !== 1 || !Number.isSafeInteger(parsed.incarnation) ||
      !Array.isArray(parsed.members)
    ) {
      throw new Error("missing fields");
    }
    const members = parsed.members.filter((m) =>
      typeof m?.id === "string" && typeof m.address === "string" &&
      typeof m.httpAddress === "string"
    );
    return { format: 1, incarnation: parsed.incarnation, members };
  } catch (cause) {
    throw new ConfigError(
      "data-dir",
      `${path} is damaged (${(cause as Error).message}); delete it to start with no known members`,
    );
  }
}

export async function writeClusterState(dataDir: string, state: ClusterState): Promise<void> {
  await writeJsonDurably(`${dataDir}/${CLUSTER_STATE_FILE}`, state);
}

/** Rewrites the identity with the adopted cluster id (durably) and returns the new identity. */
export async function adoptClusterId(
  dataDir: string,
  identity: Identity,
  clusterId: string,
): Promise<Identity> {
  const next: Identity = { ...identity, clusterId };
  await writeJsonDurably(`${dataDir}/${IDENTITY_FILE}`, next);
  return next;
}
