import assert from "node:assert/strict";
import { withTempDir } from "../../tests/support/temp_dir.ts";
import { Store } from "../storage/kv/store.ts";
import { decodeToken } from "./causal_token.ts";
import { ReplicationService } from "./service.ts";

Deno.test("ReplicationService.token() covers every write and remote entry as soon as it is applied", async () => {
  await withTempDir("shanghai-service-token-", async (dataDir) => {
    const store = await Store.open({ dataDir, nodeId: "n1" });
    try {
      const service = new ReplicationService({ store });
      const value = new TextEncoder().encode("1");
      assert.deepEqual(decodeToken(service.token()), {});
      for (let seq = 1; seq <= 3; seq++) {
        await store.put(`k${seq}`, value, "application/json");
        assert.deepEqual(decodeToken(service.token()), { [store.origin]: seq });
        assert.equal(service.token(), service.token(), "unchanged vector, same token");
      }
      await store.applyRemote({
        origin: "n2",
        seq: 1,
        hlc: 5,
        op: "put",
        key: "r",
        value,
        contentType: "application/json",
        prevHlc: 0,
        prevOrigin: "",
      });
      assert.deepEqual(decodeToken(service.token()), { [store.origin]: 3, n2: 1 });
    } finally {
      await store.close({ snapshot: false });
    }
  });
});
