import assert from "node:assert/strict";
import {
  identityOrigin,
  PRIOR_ORIGINS_MAX,
  readIdentity,
  writeIdentity,
} from "../cluster/identity.ts";
import { withTempDir } from "../../tests/support/temp_dir.ts";
import { loadOrCreateIdentity } from "./identity.ts";
import {
  clearShippingUnsynced,
  markShippingUnsynced,
  originAfterUnsyncedShipping,
  SHIPPED_UNSYNCED_FILE,
} from "./unsynced.ts";

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

Deno.test("unsynced shipping: a run that shipped early and did not close gives the next one a new origin", async () => {
  await withTempDir("unsynced-test-", async (dir) => {
    const created = await loadOrCreateIdentity(dir, "n1", 1);
    const origin = identityOrigin(created);
    // No marker: the origin stays (a node that never shipped early, or closed cleanly).
    assert.deepEqual(await originAfterUnsyncedShipping(dir, created), { identity: created });

    assert.equal(markShippingUnsynced(dir), true);
    assert.ok(await exists(`${dir}/${SHIPPED_UNSYNCED_FILE}`));
    // A crash here: the next start draws a new origin and remembers the old one, durably.
    const after = await originAfterUnsyncedShipping(dir, created);
    assert.equal(after.replaced, origin);
    assert.match(identityOrigin(after.identity), /^n1~[0-9a-f]{8}$/);
    assert.notEqual(identityOrigin(after.identity), origin);
    assert.deepEqual(after.identity.priorOrigins, [origin]);
    assert.deepEqual(await readIdentity(dir), after.identity);
    assert.equal(await exists(`${dir}/${SHIPPED_UNSYNCED_FILE}`), false);
    // The start after that one keeps it.
    assert.deepEqual(await originAfterUnsyncedShipping(dir, after.identity), {
      identity: after.identity,
    });

    // A clean stop removes the marker: the next start keeps the origin.
    assert.equal(markShippingUnsynced(dir), true);
    await clearShippingUnsynced(dir);
    await clearShippingUnsynced(dir); // twice is fine
    assert.deepEqual(await originAfterUnsyncedShipping(dir, after.identity), {
      identity: after.identity,
    });
  });
});

Deno.test("unsynced shipping: node.json remembers at most PRIOR_ORIGINS_MAX earlier origins", async () => {
  await withTempDir("unsynced-test-", async (dir) => {
    let identity = await loadOrCreateIdentity(dir, "n1", 1);
    const seen = [identityOrigin(identity)];
    for (let crash = 0; crash < PRIOR_ORIGINS_MAX + 3; crash++) {
      assert.equal(markShippingUnsynced(dir), true);
      identity = (await originAfterUnsyncedShipping(dir, identity)).identity;
      seen.push(identityOrigin(identity));
    }
    assert.equal(new Set(seen).size, seen.length, "every origin is new");
    assert.deepEqual(identity.priorOrigins, seen.slice(-PRIOR_ORIGINS_MAX - 1, -1));
    assert.deepEqual(await readIdentity(dir), identity);
  });
});

Deno.test("unsynced shipping: a marker that cannot be made durable is reported, not thrown", () => {
  assert.equal(markShippingUnsynced("/nonexistent-shanghai-test-dir"), false);
});

Deno.test("identity: prior origins that are not this node's origins are refused as damage", async () => {
  await withTempDir("unsynced-test-", async (dir) => {
    const identity = await loadOrCreateIdentity(dir, "n1", 1);
    await writeIdentity(dir, { ...identity, priorOrigins: ["n2~0123abcd"] });
    await assert.rejects(() => readIdentity(dir), /is damaged/);
    await writeIdentity(dir, { ...identity, priorOrigins: "n1" as unknown as string[] });
    await assert.rejects(() => readIdentity(dir), /is damaged/);
  });
});
