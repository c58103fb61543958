import assert from "node:assert/strict";
import type { KeyRecord } from "../storage/kv/keyspace.ts";
import { Random } from "../common/random.ts";
import { Keyspace } from "../storage/kv/keyspace.ts";
import { stateDigest, stateDigestInSteps } from "./digest.ts";

function record(value: number[] | null, hlc: number, origin: string): KeyRecord {
  return {
    value: value === null ? null : new Uint8Array(value),
    contentType: "",
    hlc,
    origin,
    seq: 1,
    lsn: 1,
    prevHlc: 0,
    prevOrigin: "",
  };
}

Deno.test("stateDigest() ignores order, lsn and tombstones, and sees every value and version", () => {
  const a: [string, KeyRecord][] = [["x", record([1], 5, "n1")], ["y", record([2], 6, "n2")], [
    "z",
    record(null, 7, "n1"),
  ]];
  const b: [string, KeyRecord][] = [["y", { ...record([2], 6, "n2"), lsn: 99 }], [
    "x",
    record([1], 5, "n1"),
  ]];
  assert.equal(stateDigest(a), stateDigest(b));
  assert.notEqual(stateDigest(a), stateDigest([["x", record([1], 5, "n1")]]));
  assert.notEqual(
    stateDigest(a),
    stateDigest([["x", record([9], 5, "n1")], ["y", record([2], 6, "n2")]]),
  );
  assert.notEqual(
    stateDigest(a),
    stateDigest([["x", record([1], 5, "n3")], ["y", record([2], 6, "n2")]]),
  );
  // Values larger than the packing buffer hash like any other.
  const big = new Array(300_000).fill(7);
  assert.equal(
    stateDigest([["k", record(big, 1, "n1")]]),
    stateDigest([["k", record(big, 1, "n1")]]),
  );
  assert.match(stateDigest([]), /^[0-9a-f]{64}$/);
});

Deno.test("stateDigestInSteps() digests the view of its start while writes go on between steps (50 seeds)", async () => {
  for (let seed = 1; seed <= 50; seed++) {
    const random = new Random(seed);
    const ks = new Keyspace();
    let seq = 0;
    const write = () => {
      seq++;
      const key = `k${random.int(60)}`;
      const prev = ks.getVersion(key);
      ks.apply({
        lsn: seq,
        origin: "n1",
        seq,
        hlc: seq,
        op: random.chance(0.2) ? "delete" : "put",
        key,
        value: new Uint8Array([seq % 256, random.int(256)]),
        contentType: "",
        prevHlc: prev?.hlc ?? 0,
        prevOrigin: prev?.origin ?? "",
      });
    };
    for (let i = 0; i < 80; i++) write();
    // A tombstone's value is null whatever the entry carried; take the view's own records.
    const expected = stateDigest([...ks.entries()]);
    let pauses = 0;
    const digest = await stateDigestInSteps(ks.beginSortedRead(), () => {
      pauses++;
      for (let i = 0; i < 1 + random.int(5); i++) write();
      // A sorted read does not hold up tombstone collection.
      if (random.chance(0.3)) ks.collectTombstones({ n1: seq }, Number.MAX_SAFE_INTEGER);
      return Promise.resolve();
    }, 1 + random.int(7));
    assert.ok(pauses > 0);
    assert.equal(digest, expected, `seed ${seed}`);
    assert.notEqual(stateDigest([...ks.entries()]), expected, "the writes changed the view");
  }
});
