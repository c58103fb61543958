import assert from "node:assert/strict";
import { withTempDir } from "../../tests/support/temp_dir.ts";
import { ConfigError } from "../common/errors.ts";
import {
  adoptClusterId,
  CLUSTER_STATE_FILE,
  readClusterState,
  writeClusterState,
} from "./cluster_state.ts";
import { IDENTITY_FILE, readIdentity, writeIdentity } from "./identity.ts";

const withDir = (fn: (dir: string) => Promise<void>) => withTempDir("cluster-state-test-", fn);

Deno.test("readClusterState() returns what writeClusterState() wrote, and nothing before", async () => {
  await withDir(async (dir) => {
    assert.equal(await readClusterState(dir), undefined);
    const member = { id: "n2", address: "10.0.1.12:4000", httpAddress: "10.0.1.12:9090" };
    await writeClusterState(dir, { format: 1, incarnation: 3, members: [member] });
    assert.deepEqual(await readClusterState(dir), { format: 1, incarnation: 3, members: [member] });
  });
});

Deno.test("cluster.json and node.json that do not check out are refused with what to do about each", async () => {
  await withDir(async (dir) => {
    const cases = [
      {
        file: CLUSTER_STATE_FILE,
        read: readClusterState,
        advice: /delete it to start with no known members$/,
      },
      { file: IDENTITY_FILE, read: readIdentity, advice: /restore it from a backup$/ },
    ];
    for (const { file, read, advice } of cases) {
      for (
        const [text, problem] of [["{broken", /JSON/], ["null", /missing fields/], [
          '{"format":2}',
          /missing fields/,
        ]] as const
      ) {
        await Deno.writeTextFile(`${dir}/${file}`, text);
        await assert.rejects(() => read(dir), (error: unknown) => {
          assert.ok(error instanceof ConfigError, String(error));
          assert.equal(error.setting, "data-dir");
          assert.match(error.message, new RegExp(`${dir}/${file} is damaged \\(`));
          assert.match(error.message, problem);
          assert.match(error.message, advice);
          return true;
        });
      }
    }
  });
});

Deno.test("adoptClusterId() rewrites node.json with the new cluster id and keeps the node id and origin", async () => {
  await withDir(async (dir) => {
    const identity = {
      format: 1 as const,
      nodeId: "n1",
      clusterId: "aaaa",
      createdMs: 1,
      origin: "n1~0a1b2c3d",
    };
    await writeIdentity(dir, identity);
    const adopted = await adoptClusterId(dir, identity, "bbbb");
    assert.deepEqual(adopted, { ...identity, clusterId: "bbbb" });
    assert.deepEqual(await readIdentity(dir), adopted);
  });
});
