import assert from "node:assert/strict";
import {
  FRAME_SLAB_BYTES,
  FRAME_SLAB_TAKE_BYTES_MAX,
  VALUE_SLAB_BYTES,
  VALUE_SLAB_TAKE_BYTES_MAX,
} from "./limits.ts";
import {
  prefaultingIdle,
  prefaultSlabs,
  prefaultStats,
  slabBytesHandedOut,
  takeFrameBytes,
  takeValueBytes,
} from "./value_slab.ts";

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

Deno.test("takeFrameBytes carves frame payloads out of slabs of their own; larger ones get their own buffers", () => {
  let first = takeFrameBytes(FRAME_SLAB_TAKE_BYTES_MAX);
  while (first.byteOffset !== 0) first = takeFrameBytes(FRAME_SLAB_TAKE_BYTES_MAX);
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

Deno.test("prefaultSlabs: new slabs come from the maker while on, and are allocated here once off", async () => {
  const made: Uint8Array<ArrayBuffer>[] = [];
  const maker = (bytes: number) => {
    const slab = new Uint8Array(bytes);
    made.push(slab);
    return Promise.resolve(slab);
  };
  try {
    assert.deepEqual(prefaultSlabs(1, maker), { on: true });
    assert.deepEqual(made.map((s) => s.length), [VALUE_SLAB_BYTES, FRAME_SLAB_BYTES]);
    await prefaultingIdle();
    // Enough slots to start a new slab of each kind: the first new one is the made one.
    const frames = new Set<ArrayBufferLike>();
    for (let i = 0; i <= FRAME_SLAB_BYTES / FRAME_SLAB_TAKE_BYTES_MAX; i++) {
      frames.add(takeFrameBytes(FRAME_SLAB_TAKE_BYTES_MAX).buffer);
    }
    assert.ok(made.some((slab) => frames.has(slab.buffer)), "the made frame slab");
    const bodies = new Set<ArrayBufferLike>();
    for (let i = 0; i <= VALUE_SLAB_BYTES / VALUE_SLAB_TAKE_BYTES_MAX; i++) {
      bodies.add(takeValueBytes(VALUE_SLAB_TAKE_BYTES_MAX).buffer);
    }
    assert.ok(made.some((slab) => bodies.has(slab.buffer)), "the made body slab");
    assert.ok(prefaultStats().frames.prefaulted >= 1);
    assert.ok(prefaultStats().request_bodies.prefaulted >= 1);
  } finally {
    assert.deepEqual(prefaultSlabs(0), { on: false, problem: "turned off" });
    await prefaultingIdle();
  }
  const count = made.length;
  const after = startNewFrameSlab();
  assert.ok(!made.some((slab) => slab.buffer === after.buffer));
  assert.equal(made.length, count, "nothing asked of the maker once off");
});

/** Takes the largest frame slots until a new frame slab starts; returns that first slot. */
function startNewFrameSlab(): Uint8Array {
  const first = takeFrameBytes(FRAME_SLAB_TAKE_BYTES_MAX);
  for (let i = 0; i <= FRAME_SLAB_BYTES / FRAME_SLAB_TAKE_BYTES_MAX; i++) {
    const next = takeFrameBytes(FRAME_SLAB_TAKE_BYTES_MAX);
    if (next.buffer !== first.buffer) return next;
  }
  throw new Error("no new frame slab started");
}
