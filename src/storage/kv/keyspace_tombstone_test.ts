import assert from "node:assert/strict";
import type { Entry } from "../../common/entry.ts";
import { Keyspace } from "./keyspace.ts";

function put(origin: string, seq: number, hlc: number, key: string, value: number | null): Entry {
  return {
    lsn: 0,
    origin,
    seq,
    hlc,
    op: value === null ? "delete" : "put",
    key,
    value: value === null ? null : new Uint8Array([value]),
    contentType: "",
    prevHlc: 0,
    prevOrigin: "",
  };
}

Deno.test("Keyspace.collectTombstones() removes only tombstones every member holds, older than the bound", () => {
  const ks = new Keyspace();
  ks.apply(put("n1", 1, 10, "a", 1));
  ks.apply(put("n1", 2, 20, "a", null));
  ks.apply(put("n2", 1, 30, "b", null));
  ks.apply(put("n1", 3, 40, "c", 3));
  assert.equal(ks.tombstones, 2);
  assert.equal(ks.collectTombstones({ n1: 2, n2: 0 }, 100), 1); // b is not everywhere yet
  assert.equal(ks.tombstones, 1);
  assert.equal(ks.collectTombstones({ n1: 3, n2: 1 }, 25), 0); // b is too recent
  assert.equal(ks.collectTombstones({ n1: 3, n2: 1 }, 31), 1);
  assert.equal(ks.tombstones, 0);
  assert.deepEqual(ks.scan({ limit: 10 }).map(([k]) => k), ["c"]);
  // A collected key can be written again and scans once.
  ks.apply(put("n2", 2, 50, "a", 9));
  assert.deepEqual(ks.scan({ limit: 10 }).map(([k]) => k), ["a", "c"]);
});

Deno.test("Keyspace.mergeVersionVector() raises the vector and folds entries held ahead", () => {
  const ks = new Keyspace();
  ks.apply(put("n1", 1, 1, "a", 1));
  ks.apply(put("n1", 5, 5, "a", 5));
  ks.apply(put("n1", 7, 7, "a", 7));
  assert.equal(ks.versionVector().n1, 1);
  ks.mergeVersionVector({ n1: 4, n2: 3 });
  assert.deepEqual(ks.versionVector(), { n1: 5, n2: 3 });
  assert.equal(ks.has("n1", 7), true);
  ks.apply(put("n1", 6, 6, "a", 6));
  assert.equal(ks.versionVector().n1, 7);
});
