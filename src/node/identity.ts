/**
 * A data directory's identity: `node.json` holds the node id and cluster id it belongs to,
 * written once (temp file, fsync, rename, directory fsync) and checked at every start.
 *
 * @module
 */
import { ConfigError } from "../common/errors.ts";
import { randomHex } from "../common/random.ts";
import { readTextIfExists, writeFileAtomic } from "../storage/durable_fs.ts";

export interface Identity {
  format: 1;
  nodeId: string;
  clusterId: string;
  createdMs: number;
}

export const IDENTITY_FILE = "node.json";

export async function writeJsonDurably(path: string, value: unknown): Promise<void> {
  await writeFileAtomic(path, new TextEncoder().encode(JSON.stringify(value, null, 2) + "\n"));
}

export async function readIdentity(dataDir: string): Promise<Identity | undefined> {
  const path = `${dataDir}/${IDENTITY_FILE}`;
  const text = await readTextIfExists(path);
  if (text === undefined) return undefined;
  try {
    const parsed = JSON.parse(text) as Identity;
    if (
      parsed.format !== 1 || typeof parsed.nodeId !== "string" ||
      typeof parsed.clusterId !== "string"
    ) {
      throw new Error("missing fields");
    }
    return parsed;
  } catch (cause) {
    throw new ConfigError(
      "data-dir",
      `${path} is damaged (${(cause as Error).message}); restore it from a backup`,
    );
  }
}

/**
 * Loads the identity, creating it on first start. A configured node id that differs from the
 * stored one is refused: a data directory belongs to one node.
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
  const identity: Identity = {
    format: 1,
    nodeId: configuredNodeId ?? `node-${randomHex(3)}`,
    clusterId: randomHex(8),
    createdMs: nowMs,
  };
  await writeJsonDurably(`${dataDir}/${IDENTITY_FILE}`, identity);
  return identity;
}
