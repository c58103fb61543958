import assert from "node:assert/strict";
import { crc32 } from "../../common/crc32.ts";
import { concatBytes } from "../../common/bytes.ts";
import { frameRecord, readRecord } from "./record.ts";

Deno.test("crc32() matches the IEEE check value", () => {
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  assert.equal(crc32(new Uint8Array(0)), 0);
});

Deno.test("frameRecord() lays out length, CRC-32 and data little-endian", () => {
  const data = new Uint8Array([1, 2, 3]);
  const frame = frameRecord(data);
  const view = new DataView(frame.buffer);
  assert.equal(frame.length, 11);
  assert.equal(view.getUint32(0, true), 3);
  assert.equal(view.getUint32(4, true), crc32(data));
  assert.deepEqual(frame.subarray(8), data);
});

Deno.test("readRecord() returns the data of a good record and the next offset", () => {
  const bytes = concatBytes([
    frameRecord(new Uint8Array([9])),
    frameRecord(new Uint8Array([7, 7])),
  ]);
  const first = readRecord(bytes, 0, 100);
  assert.ok(first.ok);
  assert.deepEqual(first.data, new Uint8Array([9]));
  const second = readRecord(bytes, first.next, 100);
  assert.ok(second.ok);
  assert.deepEqual(second.data, new Uint8Array([7, 7]));
  assert.equal(second.next, bytes.length);
});

Deno.test("readRecord() names each kind of damage", () => {
  const good = frameRecord(new Uint8Array([1, 2, 3, 4]));
  assert.deepEqual(readRecord(good.subarray(0, 5), 0, 100), {
    ok: false,
    problem: "truncated header",
  });
  assert.deepEqual(readRecord(good.subarray(0, 10), 0, 100), {
    ok: false,
    problem: "truncated data",
  });
  assert.deepEqual(readRecord(good, 0, 3), { ok: false, problem: "bad length" });
  assert.deepEqual(readRecord(new Uint8Array(16), 0, 100), { ok: false, problem: "bad length" });
  for (let i = 8; i < good.length; i++) {
    const flipped = good.slice();
    flipped[i] ^= 0x40;
    assert.deepEqual(
      readRecord(flipped, 0, 100),
      { ok: false, problem: "checksum mismatch" },
      `byte ${i}`,
    );
  }
});
