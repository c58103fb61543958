import assert from "node:assert/strict";
import {
  FRAME_SLAB_BYTES,
  FRAME_SLAB_TAKE_BYTES_MAX,
  VALUE_SLAB_BYTES,
  VALUE_SLAB_TAKE_BYTES_MAX,
} from "./limits.ts";
import {
  holdPrefaultedSlabs,
  prefaultStats,
  slabBytesHandedOut,
  takeFrameBytes,
  takeValueBytes,
} from "./value_slab.ts";

/**
 * Takes the largest slots until a new slab starts; returns that first slot. Request bodies by
 * default; frames with `takeFrameBytes` and the frame limits.
 */
function startNewSlab(
  take = takeValueBytes,
  slabBytes = VALUE_SLAB_BYTES,
  takeMax = VALUE_SLAB_TAKE_BYTES_MAX,
): Uint8Array {
  const first = take(takeMax);
  for (let i = 0; i <= slabBytes / takeMax; i++) {
    const next = take(takeMax);
    if (next.buffer !== first.buffer) return next;
  }
  throw new Error("no new slab started");
}

const startNewFrameSlab = () =>
  startNewSlab(takeFrameBytes, FRAME_SLAB_BYTES, FRAME_SLAB_TAKE_BYTES_MAX);

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

Deno.test("takeFrameBytes carves frame payloads out of slabs of their own; larger ones get their own buffers", () => {
  const first = startNewFrameSlab();
  assert.equal(first.byteOffset, 0);
  assert.equal(first.buffer.byteLength, FRAME_SLAB_BYTES);
  const next = takeFrameBytes(1000);
  assert.equal(next.buffer, first.buffer);
  assert.equal(next.byteOffset, FRAME_SLAB_TAKE_BYTES_MAX);
  assert.equal(slabBytesHandedOut(first.buffer), FRAME_SLAB_TAKE_BYTES_MAX + 1000);
  // Request bodies and frames never share a slab.
  assert.notEqual(takeValueBytes(10).buffer, first.buffer);
  const large = takeFrameBytes(FRAME_SLAB_TAKE_BYTES_MAX + 1);
  assert.equal(large.buffer.byteLength, FRAME_SLAB_TAKE_BYTES_MAX + 1);
});

Deno.test("holdPrefaultedSlabs: new slabs come from the maker while any hold lasts, and are allocated here after the last release", async () => {
  const made: Uint8Array<ArrayBuffer>[] = [];
  const maker = (bytes: number) => {
    const slab = new Uint8Array(bytes);
    made.push(slab);
    return Promise.resolve(slab);
  };
  const fromMaker = (slot: Uint8Array) => made.some((slab) => slab.buffer === slot.buffer);
  const first = holdPrefaultedSlabs(1, maker);
  const second = holdPrefaultedSlabs(1, maker);
  assert.ok(!("problem" in first) && !("problem" in second));
  try {
    await Promise.resolve(); // the made slabs arrive
    assert.deepEqual(made.map((s) => s.length), [VALUE_SLAB_BYTES, FRAME_SLAB_BYTES]);
    // The one ready slab of each kind is the next new one.
    assert.ok(fromMaker(startNewFrameSlab()), "the made frame slab");
    assert.ok(fromMaker(startNewSlab()), "the made body slab");
    assert.ok(prefaultStats().frames.prefaulted >= 1);
    assert.ok(prefaultStats().request_bodies.prefaulted >= 1);

    // One hold released, one left: still on.
    await first.release();
    await first.release(); // a second release of the same hold counts once
    await Promise.resolve();
    assert.ok(fromMaker(startNewFrameSlab()), "still on while a hold lasts");
  } finally {
    await second.release();
  }
  const count = made.length;
  assert.ok(!fromMaker(startNewFrameSlab()));
  assert.ok(!fromMaker(startNewSlab()));
  assert.equal(made.length, count, "nothing asked of the maker after the last release");
});
