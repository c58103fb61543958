/**
 * A data directory's identity: `node.json` holds the node id and the id of the cluster the
 * directory belongs to. The node writes it once at its first start (`loadOrCreateIdentity`
 * decides the ids); the cluster layer rewrites it when a fresh joiner adopts a cluster's id.
 *
 * @module
 */
import { readJsonFile, writeJsonFile } from "./_json_file.ts";
import { isOrigin, originNode } from "../common/origin.ts";

export interface Identity {
  format: 1;
  nodeId: string;
  clusterId: string;
  createdMs: number;
  /**
   * The origin this directory's writes carry (see src/common/origin.ts): drawn when the
   * directory is created or restored. Absent in directories made before origins had tags:
   * their origin is the node id.
   */
  origin?: string;
  /**
   * Origins this directory's log wrote under before `origin`, oldest first (at most
   * PRIOR_ORIGINS_MAX): a run that shipped entries before their fdatasync and then crashed
   * gives the node a new origin at its next start (src/node/unsynced.ts), but its log, and a
   * backup of it, goes on. A restore starts the list afresh.
   */
  priorOrigins?: string[];
}

/** How many earlier origins node.json remembers (a backup of an older one is taken in full). */
export const PRIOR_ORIGINS_MAX = 32;

/** The origin a directory's writes carry. */
export function identityOrigin(identity: Identity): string {
  return identity.origin ?? identity.nodeId;
}

export const IDENTITY_FILE = "node.json";

export async function readIdentity(dataDir: string): Promise<Identity | undefined> {
  return await readJsonFile(`${dataDir}/${IDENTITY_FILE}`, {
    check: (parsed) => {
      const identity = parsed as Identity;
      if (
        identity?.format !== 1 || typeof identity.nodeId !== "string" ||
        typeof identity.clusterId !== "string" ||
        (identity.origin !== undefined &&
          !(isOrigin(identity.origin) && originNode(identity.origin) === identity.nodeId)) ||
        (identity.priorOrigins !== undefined &&
          !(Array.isArray(identity.priorOrigins) &&
            identity.priorOrigins.every((o) => isOrigin(o) && originNode(o) === identity.nodeId)))
      ) {
        throw new Error("missing fields");
      }
      return identity;
    },
    advice: "restore it from a backup",
  });
}

/** Writes `node.json` durably (temp file, fsync, rename, directory fsync). */
export async function writeIdentity(dataDir: string, identity: Identity): Promise<void> {
  await writeJsonFile(`${dataDir}/${IDENTITY_FILE}`, identity);
}
