import assert from "node:assert/strict";
import { withTempDir } from "../../tests/support/temp_dir.ts";
import { Store } from "../storage/kv/store.ts";
import { decodeToken } from "./causal_token.ts";
import { ReplicationService, viewDigest } from "./service.ts";
import { SORT_AT_ONCE_KEYS_MAX } from "../storage/kv/keyspace.ts";
import { FakeClock } from "../common/clock.ts";
import { TOMBSTONE_GRACE_MS_DEFAULT, TOMBSTONE_SWEEP_STEP_KEYS } from "../common/limits.ts";

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

Deno.test("ReplicationService.sweepTombstones() collects a lone node's tombstones past their grace minute, one sweep at a time", async () => {
  await withTempDir("shanghai-service-sweep-", async (dataDir) => {
    const clock = new FakeClock(1_700_000_000_000);
    const store = await Store.open({ dataDir, nodeId: "n1", clock });
    try {
      const service = new ReplicationService({ store, clock });
      const count = 2 * TOMBSTONE_SWEEP_STEP_KEYS + 5;
      await Promise.all(Array.from({ length: count }, (_, i) => store.delete(`k${i}`)));
      assert.equal(await service.sweepTombstones(), 0, "within the grace minute");
      assert.equal(store.keyspace.tombstones, count);
      clock.advance(TOMBSTONE_GRACE_MS_DEFAULT + 1_000);
      const first = service.sweepTombstones();
      assert.equal(
        await service.sweepTombstones(),
        0,
        "a second sweep while one runs does nothing",
      );
      assert.equal(await first, count);
      assert.equal(store.keyspace.tombstones, 0);
      assert.equal(await service.sweepTombstones(), 0);
    } finally {
      await store.close({ snapshot: false });
    }
  });
});

Deno.test("viewDigest() reports the vector, key count and last LSN of the moment it hashed", async () => {
  await withTempDir("shanghai-service-digest-", async (dataDir) => {
    const store = await Store.open({ dataDir, nodeId: "n1" });
    try {
      const value = new TextEncoder().encode("1");
      const count = 3 * SORT_AT_ONCE_KEYS_MAX; // enough to order in several steps
      await Promise.all(
        Array.from({ length: count }, (_, i) => store.put(`k${i}`, value, "text/plain")),
      );
      const digesting = viewDigest(store);
      // Writes land while the key order is rebuilt and the view is hashed.
      const later = Promise.all(
        Array.from({ length: 50 }, (_, i) => store.put(`late${i}`, value, "text/plain")),
      );
      const [result] = await Promise.all([digesting, later]);
      assert.equal(result.versionVector[store.origin], result.lastLsn);
      assert.equal(result.keys, result.lastLsn);
      assert.ok(result.lastLsn >= count);
    } finally {
      await store.close({ snapshot: false });
    }
  });
});
