import assert from "node:assert/strict";
import { VALUE_SLAB_BYTES, VALUE_SLAB_TAKE_BYTES_MAX } from "./limits.ts";
import { slabBytesHandedOut, takeValueBytes } from "./value_slab.ts";

/** Takes the largest slots until a new slab starts; returns that first slot. */
function startNewSlab(): Uint8Array {
  const first = takeValueBytes(VALUE_SLAB_TAKE_BYTES_MAX);
  for (let i = 0; i <= VALUE_SLAB_BYTES / VALUE_SLAB_TAKE_BYTES_MAX; i++) {
    const next = takeValueBytes(VALUE_SLAB_TAKE_BYTES_MAX);
    if (next.buffer !== first.buffer) return next;
  }
  throw new Error("no new slab started");
}

Deno.test("takeValueBytes carves small values one after the other out of a slab", () => {
  const first = startNewSlab();
  assert.equal(first.byteOffset, 0);
  assert.equal(first.buffer.byteLength, VALUE_SLAB_BYTES);
  assert.equal(slabBytesHandedOut(first.buffer), VALUE_SLAB_TAKE_BYTES_MAX);

  const a = takeValueBytes(100);
  const b = takeValueBytes(1);
  assert.equal(a.buffer, first.buffer);
  assert.equal(a.byteOffset, VALUE_SLAB_TAKE_BYTES_MAX);
  assert.equal(b.byteOffset, VALUE_SLAB_TAKE_BYTES_MAX + 100);
  assert.deepEqual([a.byteLength, b.byteLength], [100, 1]);
  assert.ok(a.every((byte) => byte === 0));
  assert.equal(slabBytesHandedOut(first.buffer), VALUE_SLAB_TAKE_BYTES_MAX + 101);

  // Writing one slot leaves its neighbours as they were.
  a.fill(7);
  assert.equal(b[0], 0);
});

Deno.test("takeValueBytes gives large and empty values buffers of their own", () => {
  const large = takeValueBytes(VALUE_SLAB_TAKE_BYTES_MAX + 1);
  assert.equal(large.byteLength, VALUE_SLAB_TAKE_BYTES_MAX + 1);
  assert.equal(large.buffer.byteLength, large.byteLength);
  assert.equal(slabBytesHandedOut(large.buffer), large.byteLength);
  const empty = takeValueBytes(0);
  assert.equal(empty.byteLength, 0);
  assert.equal(empty.buffer.byteLength, 0);
});

Deno.test("a slab counts whole once the next one starts", () => {
  const first = startNewSlab();
  assert.ok(slabBytesHandedOut(first.buffer) < VALUE_SLAB_BYTES);
  const next = startNewSlab();
  assert.notEqual(next.buffer, first.buffer);
  assert.equal(slabBytesHandedOut(first.buffer), VALUE_SLAB_BYTES);
});
