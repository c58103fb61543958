import assert from "node:assert/strict";
import { readIdentity } from "../cluster/identity.ts";
import { ConfigError } from "../common/errors.ts";
import { loadOrCreateIdentity } from "./identity.ts";

Deno.test("identity: created once, then stable; another node id is refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
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
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
