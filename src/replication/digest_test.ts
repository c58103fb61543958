import assert from "node:assert/strict";
import type { KeyRecord } from "../storage/kv/keyspace.ts";
import { stateDigest } from "./digest.ts";

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
