import assert from "node:assert/strict";
import { identityOrigin, readIdentity, writeIdentity } from "../cluster/identity.ts";
import { ConfigError } from "../common/errors.ts";
import { loadOrCreateIdentity } from "./identity.ts";
import { withTempDir } from "../../tests/support/temp_dir.ts";

Deno.test("identity: created once, then stable; another node id is refused", async () => {
  await withTempDir("identity-test-", async (dir) => {
    assert.equal(await readIdentity(dir), undefined);
    const first = await loadOrCreateIdentity(dir, "node-1", 1);
    const again = await loadOrCreateIdentity(dir, undefined, 2);
    assert.deepEqual(again, first);
    await assert.rejects(
      () => loadOrCreateIdentity(dir, "node-2", 3),
      (e: unknown) =>
        e instanceof ConfigError && /belongs to node "node-1", not "node-2"/.test(e.message),
    );
    await Deno.writeTextFile(`${dir}/node.json`, "{broken");
    await assert.rejects(() => readIdentity(dir), /is damaged/);
  });
});

Deno.test("identity: a new directory writes under a new origin; an old one under its node id", async () => {
  await withTempDir("identity-test-", async (dir) => {
    const first = await loadOrCreateIdentity(`${dir}/a`, "node-1", 1);
    assert.match(identityOrigin(first), /^node-1~[0-9a-f]{8}$/);
    // The same node id in another (or a remade) directory never shares the origin.
    const second = await loadOrCreateIdentity(`${dir}/b`, "node-1", 1);
    assert.notEqual(identityOrigin(second), identityOrigin(first));
    // Written before origins had tags: the node id is the origin.
    await Deno.mkdir(`${dir}/old`);
    await writeIdentity(`${dir}/old`, {
      format: 1,
      nodeId: "node-1",
      clusterId: "c",
      createdMs: 1,
    });
    assert.equal(identityOrigin((await readIdentity(`${dir}/old`))!), "node-1");
    // An origin of another node, or a malformed one, is damage.
    for (const origin of ["node-2~0a1b2c3d", "node-1~", "node-1~ZZ"]) {
      await writeIdentity(`${dir}/old`, {
        format: 1,
        nodeId: "node-1",
        clusterId: "c",
        createdMs: 1,
        origin,
      });
      await assert.rejects(() => readIdentity(`${dir}/old`), /is damaged/, origin);
    }
  });
});
