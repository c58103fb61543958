/**
 * What a node keeps about its cluster in its data directory, `cluster.json`: its incarnation
 * (bumped and made durable at every start, so a restarted node always comes back with a
 * higher one) and the members it knew, so it finds them again after a restart even when
 * none of them is in its --join list. Also: adopting the cluster id of a cluster joined.
 *
 * @module
 */
import { readJsonFile, writeJsonFile } from "./_json_file.ts";
import { type Identity, writeIdentity } from "./identity.ts";

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
  return await readJsonFile(`${dataDir}/${CLUSTER_STATE_FILE}`, {
    check: (parsed) => {
      const state = parsed as ClusterState;
      if (
        state?.format !== 1 || !Number.isSafeInteger(state.incarnation) ||
        !Array.isArray(state.members)
      ) {
        throw new Error("missing fields");
      }
      const members = state.members.filter((m) =>
        typeof m?.id === "string" && typeof m.address === "string" &&
        typeof m.httpAddress === "string"
      );
      return { format: 1, incarnation: state.incarnation, members };
    },
    advice: "delete it to start with no known members",
  });
}

export async function writeClusterState(dataDir: string, state: ClusterState): Promise<void> {
  await writeJsonFile(`${dataDir}/${CLUSTER_STATE_FILE}`, state);
}

/** Rewrites the identity with the adopted cluster id (durably) and returns the new identity. */
export async function adoptClusterId(
  dataDir: string,
  identity: Identity,
  clusterId: string,
): Promise<Identity> {
  const next: Identity = { ...identity, clusterId };
  await writeIdentity(dataDir, next);
  return next;
}
