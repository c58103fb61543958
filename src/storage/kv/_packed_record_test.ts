import assert from "node:assert/strict";
import { PackedRecord } from "./_packed_record.ts";
import type { KeyRecord } from "./keyspace.ts";

function record(fields: Partial<KeyRecord> = {}): KeyRecord {
  return {
    value: new Uint8Array([1, 2, 3]),
    contentType: "application/json",
    hlc: 1_800_000_000_000 * 1024 + 5,
    origin: "n1",
    seq: 7,
    lsn: 42,
    prevHlc: 0,
    prevOrigin: "",
    ...fields,
  };
}

function fields(r: KeyRecord) {
  return {
    value: r.value === null ? null : [...r.value],
    contentType: r.contentType,
    hlc: r.hlc,
    origin: r.origin,
    seq: r.seq,
    lsn: r.lsn,
    prevHlc: r.prevHlc,
    prevOrigin: r.prevOrigin,
  };
}

Deno.test("PackedRecord gives back every HLC exactly, split or not", () => {
  const hlcs = [
    0,
    1,
    2 ** 26 - 1,
    2 ** 26,
    2 ** 26 + 1,
    Date.now() * 1024 + 1023,
    2 ** 52 + 3,
    Number.MAX_SAFE_INTEGER,
    // Not what a node issues, but what a peer's entry could carry: kept as it came.
    2 ** 60,
    -5,
    1.5,
    Infinity,
  ];
  for (const hlc of hlcs) {
    const packed = PackedRecord.of(record({ hlc, prevHlc: hlc }));
    assert.equal(packed.hlc, hlc, `hlc ${hlc}`);
    assert.equal(packed.prevHlc, hlc, `prevHlc ${hlc}`);
  }
  assert.ok(Number.isNaN(PackedRecord.of(record({ hlc: NaN })).hlc));
});

Deno.test("PackedRecord keeps a value of its own as it is and a view as its buffer and place", () => {
  const own = record();
  const packedOwn = PackedRecord.of(own);
  assert.equal(packedOwn.value, own.value, "the same Uint8Array");
  assert.equal(packedOwn.isShared, false);
  assert.equal(packedOwn.valueBytes, 3);
  assert.equal(packedOwn.valueBuffer, own.value!.buffer);
  assert.deepEqual(fields(packedOwn), fields(own));

  const batch = new Uint8Array([9, 9, 4, 5, 6, 9]);
  const shared = record({ value: batch.subarray(2, 5) });
  const packed = PackedRecord.of(shared);
  assert.equal(packed.isShared, true);
  assert.equal(packed.valueBytes, 3);
  assert.equal(packed.valueBuffer, batch.buffer);
  const view = packed.value!;
  assert.equal(view.buffer, batch.buffer);
  assert.deepEqual([view.byteOffset, view.byteLength], [2, 3]);
  assert.deepEqual(fields(packed), fields(shared));

  const tombstone = PackedRecord.of(record({ value: null, contentType: "" }));
  assert.equal(tombstone.value, null);
  assert.equal(tombstone.isTombstone, true);
  assert.equal(tombstone.isShared, false);
  assert.equal(tombstone.valueBytes, 0);
  assert.equal(tombstone.valueBuffer, undefined);
});

Deno.test("PackedRecord.of returns a packed record as it is; withValue changes the value only", () => {
  const packed = PackedRecord.of(record({ value: new Uint8Array(8).subarray(1, 4) }));
  assert.equal(PackedRecord.of(packed), packed);
  const copy = packed.withValue(packed.value!.slice());
  assert.notEqual(copy, packed);
  assert.equal(copy.isShared, false);
  assert.deepEqual(fields(copy), fields(packed));
});
