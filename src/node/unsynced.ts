/**
 * The record that a node ships entries before their fdatasync (see src/replication/shipper.ts),
 * and what a start makes of it.
 *
 * A node that ships an entry and crashes before its own sync loses the entry while its peers
 * hold it. Counting on from what it still holds would issue those sequence numbers again for
 * other writes, which its peers would drop as duplicates (version vectors are dense per
 * origin). So the first time a run ships such an entry it leaves a marker file in the data
 * directory (created and made durable before anything goes out); a clean stop removes it once
 * every written entry is durable; and a start that finds it gives the node a new origin
 * (src/common/origin.ts), remembering the old one in node.json's `priorOrigins`. The entries
 * the crashed run lost come back from the peers that hold them, under their old origin.
 *
 * A node that never had a peer never ships early and keeps its origin through any crash.
 *
 * @module
 */
import {
  type Identity,
  identityOrigin,
  PRIOR_ORIGINS_MAX,
  writeIdentity,
} from "../cluster/identity.ts";
import { newOrigin } from "../common/origin.ts";
import { syncDir, syncDirSync } from "../storage/durable_fs.ts";

/** Present while a run may have shipped entries its WAL had not made durable. */
export const SHIPPED_UNSYNCED_FILE = "shipped-unsynced";

/**
 * At start: when the last run left the marker (it shipped unsynced entries and did not stop
 * cleanly), gives the directory a new origin, durably, then removes the marker. Returns the
 * identity to run with and, when it changed, the origin it had.
 */
export async function originAfterUnsyncedShipping(
  dataDir: string,
  identity: Identity,
): Promise<{ identity: Identity; replaced?: string }> {
  const marker = `${dataDir}/${SHIPPED_UNSYNCED_FILE}`;
  try {
    await Deno.lstat(marker);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { identity };
    throw error;
  }
  const replaced = identityOrigin(identity);
  const priorOrigins = [...(identity.priorOrigins ?? []), replaced].slice(-PRIOR_ORIGINS_MAX);
  const next: Identity = { ...identity, origin: newOrigin(identity.nodeId), priorOrigins };
  // The new origin is durable before the marker goes: a crash in between draws another one.
  await writeIdentity(dataDir, next);
  await Deno.remove(marker);
  await syncDir(dataDir);
  return { identity: next, replaced };
}

/**
 * Leaves the marker, durably, before the first entry ships unsynced. Synchronous: it runs once
 * per process, inside the WAL's batch, before the frames go out. Answers false (and the node
 * ships only durable entries) when the marker cannot be made durable.
 */
export function markShippingUnsynced(dataDir: string): boolean {
  try {
    const file = Deno.openSync(`${dataDir}/${SHIPPED_UNSYNCED_FILE}`, {
      write: true,
      create: true,
      truncate: true,
    });
    try {
      file.syncSync();
    } finally {
      file.close();
    }
    syncDirSync(dataDir);
    return true;
  } catch {
    return false;
  }
}

/** At a clean stop, once every entry written is durable: the next start keeps the origin. */
export async function clearShippingUnsynced(dataDir: string): Promise<void> {
  try {
    await Deno.remove(`${dataDir}/${SHIPPED_UNSYNCED_FILE}`);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  await syncDir(dataDir);
}
