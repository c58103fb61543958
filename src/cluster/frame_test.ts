import assert from "node:assert/strict";
import { Encoder } from "cbor-x";
import { concatBytes } from "../common/bytes.ts";
import { crc32 } from "../common/crc32.ts";
import { TooLargeError } from "../common/errors.ts";
import { FRAME_SLAB_BYTES, FRAME_SLAB_TAKE_BYTES_MAX } from "../common/limits.ts";
import { Random } from "../common/random.ts";
import { takeFrameBytes } from "../common/value_slab.ts";
import {
  ByteParts,
  decodePayload,
  encodeFrame,
  FrameDecoder,
  PROTOCOL_VERSION,
  ProtocolError,
  withJoinedBytes,
} from "./frame.ts";

function rawFrame(
  payload: Uint8Array,
  options: { length?: number; crc?: number } = {},
): Uint8Array {
  const out = new Uint8Array(8 + payload.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, options.length ?? payload.length, true);
  view.setUint32(4, options.crc ?? crc32(payload), true);
  out.set(payload, 8);
  return out;
}

const cbor = new Encoder({ useRecords: false, mapsAsObjects: true });

Deno.test("FrameDecoder reads frames fed one byte at a time and at random split points", () => {
  const frames = [
    encodeFrame("cluster.ping", { s: 1, i: 2, g: [] }),
    encodeFrame("repl.batch", { entries: [new Uint8Array(3000).fill(7)] }),
    encodeFrame("x", null),
  ];
  const stream = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  let at = 0;
  for (const f of frames) {
    stream.set(f, at);
    at += f.length;
  }
  const oneByte = new FrameDecoder();
  const got = [];
  for (let i = 0; i < stream.length; i++) got.push(...oneByte.push(stream.subarray(i, i + 1)));
  assert.deepEqual(got.map((f) => f.type), ["cluster.ping", "repl.batch", "x"]);
  assert.equal(oneByte.bufferedBytes, 0);
  oneByte.end();
  const random = new Random(7);
  for (let round = 0; round < 200; round++) {
    const decoder = new FrameDecoder();
    const out = [];
    let from = 0;
    while (from < stream.length) {
      const to = Math.min(stream.length, from + 1 + random.int(2000));
      out.push(...decoder.push(stream.slice(from, to)));
      from = to;
    }
    assert.equal(out.length, 3);
    assert.equal(out[0].version, PROTOCOL_VERSION);
    assert.deepEqual(out[0].body, { s: 1, i: 2, g: [] });
    assert.deepEqual((out[1].body as { entries: Uint8Array[] }).entries[0].length, 3000);
  }
});

Deno.test("FrameDecoder refuses malformed frames with ProtocolError", () => {
  const good = cbor.encode([1, "t", {}]);
  const cases: [string, Uint8Array, number?][] = [
    ["zero length", rawFrame(new Uint8Array(0))],
    ["oversize", rawFrame(good, { length: 5000 }), 4096],
    ["bad crc", rawFrame(good, { crc: 12345 })],
    ["not cbor", rawFrame(new Uint8Array([0xff, 0xff, 0xff]))],
    ["not an array", rawFrame(cbor.encode({ a: 1 }))],
    ["short array", rawFrame(cbor.encode([1, "t"]))],
    ["bad version", rawFrame(cbor.encode([0, "t", null]))],
    ["bad type", rawFrame(cbor.encode([1, 5, null]))],
    ["long type", rawFrame(cbor.encode([1, "t".repeat(65), null]))],
    ["garbage", new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n")],
  ];
  for (const [name, bytes, limit] of cases) {
    const decoder = new FrameDecoder(limit);
    assert.throws(() => decoder.push(bytes), ProtocolError, name);
  }
});

Deno.test("FrameDecoder.end() reports a truncated frame", () => {
  const frame = encodeFrame("cluster.ping", { s: 1 });
  const decoder = new FrameDecoder();
  assert.deepEqual(decoder.push(frame.subarray(0, frame.length - 1)), []);
  assert.throws(() => decoder.end(), new RegExp(`stream ended ${frame.length - 1} bytes`));
  // A stream that ends right after a whole header, and one inside a header.
  const headerOnly = new FrameDecoder();
  assert.deepEqual(headerOnly.push(frame.subarray(0, 8)), []);
  assert.equal(headerOnly.bufferedBytes, 8);
  assert.throws(() => headerOnly.end(), /stream ended 8 bytes/);
  const partHeader = new FrameDecoder();
  partHeader.push(frame.subarray(0, 3));
  assert.throws(() => partHeader.end(), /stream ended 3 bytes/);
});

Deno.test("encodeFrame() refuses a payload over the limit", () => {
  assert.throws(() => encodeFrame("big", new Uint8Array(5000), { bytesMax: 4096 }), TooLargeError);
  assert.equal(decodePayload(encodeFrame("a", 1).subarray(8)).body, 1);
});

Deno.test("encodeFrame() writes a ByteParts field as the byte string its parts make, byte for byte as cbor-x with that field last", () => {
  const random = new Random(40);
  // Byte strings of every head width, and maps whose count crosses 23/24 and 255/256.
  for (const bytes of [0, 1, 23, 24, 255, 256, 65_535, 65_536, 300_000]) {
    for (const fields of [0, 1, 22, 23, 24, 255, 300]) {
      const all = Uint8Array.from({ length: bytes }, () => random.int(256));
      let at = 0;
      const parts: Uint8Array[] = [];
      while (at < bytes) {
        const n = Math.min(bytes - at, 1 + random.int(40_000));
        parts.push(all.subarray(at, at + n));
        at += n;
      }
      const rest: Record<string, unknown> = {};
      for (let i = 0; i < fields; i++) rest[`f${i}`] = i % 3 === 0 ? `v${i}` : i * 1_000_003;
      const frame = encodeFrame("repl.batch", { ...rest, records: new ByteParts(parts) });
      const joined = encodeFrame("repl.batch", { ...rest, records: all });
      assert.deepEqual(frame, joined, `${bytes} bytes after ${fields} fields`);
      const decoded = new FrameDecoder().push(frame);
      assert.equal(decoded.length, 1);
      assert.deepEqual(decoded[0].body, { ...rest, records: all });
    }
  }
  // Wherever the field stands in the body, it decodes the same (written last).
  const parts = new ByteParts([Uint8Array.of(1, 2), Uint8Array.of(3)]);
  const frame = encodeFrame("t", { a: 1, records: parts, z: "end" });
  assert.deepEqual(decodePayload(frame.subarray(8)).body, {
    a: 1,
    z: "end",
    records: Uint8Array.of(1, 2, 3),
  });
  assert.throws(() => encodeFrame("t", { a: parts, b: parts }), TypeError);
  assert.throws(
    () => encodeFrame("t", { records: new ByteParts([new Uint8Array(5000)]) }, { bytesMax: 4096 }),
    TooLargeError,
  );
  // Transports that hand bodies over without encoding them deliver the same.
  assert.deepEqual(withJoinedBytes({ a: 1, records: parts }), {
    a: 1,
    records: Uint8Array.of(1, 2, 3),
  });
  const plain = { a: 1 };
  assert.equal(withJoinedBytes(plain), plain);
});

Deno.test("FrameDecoder keeps nothing of a chunk: one buffer read into again and again, and spare() filled directly", () => {
  const random = new Random(11);
  const values = Array.from(
    { length: 40 },
    (_, i) => new Uint8Array(1 + random.int(300_000)).fill(i),
  );
  const stream = concatBytes(values.map((v, i) => encodeFrame("repl.batch", { i, v })));
  for (let round = 0; round < 20; round++) {
    const decoder = new FrameDecoder();
    const buffer = new Uint8Array(64 * 1024);
    const got: { i: number; v: Uint8Array }[] = [];
    let from = 0;
    while (from < stream.length) {
      // As the transport reads: the rest of a large frame straight into spare(), else into
      // the one buffer, scribbled over once the decoder has it.
      const spare = decoder.spare();
      const direct = spare !== undefined && (round % 2 === 0 || spare.length >= buffer.length);
      const into = direct ? spare : buffer;
      const n = Math.min(stream.length - from, into.length, 1 + random.int(100_000));
      into.set(stream.subarray(from, from + n));
      from += n;
      const frames = direct ? decoder.filled(n) : decoder.push(buffer.subarray(0, n));
      if (!direct) buffer.fill(0xee);
      for (const frame of frames) got.push(frame.body as { i: number; v: Uint8Array });
    }
    decoder.end();
    // Checked only after the whole stream: a payload buffer written again for a later frame
    // would show here. Followers keep replicated values as views into payloads
    // (decodeBatchEntries), so no payload may ever be written once decoded.
    assert.equal(got.length, values.length);
    for (const { i, v } of got) assert.deepEqual(v, values[i], `frame ${i}, round ${round}`);
  }
  assert.throws(() => new FrameDecoder().filled(1), RangeError);
});

Deno.test("FrameDecoder reads payloads into shared slabs, byte strings staying views at their offsets there", () => {
  const values = [1, 2, 3].map((i) => new Uint8Array(1000 + i).fill(i));
  const large = new Uint8Array(FRAME_SLAB_TAKE_BYTES_MAX + 1).fill(9);
  const stream = concatBytes([
    ...values.map((v, i) => encodeFrame("repl.batch", { i, v })),
    encodeFrame("repl.batch", { i: 3, v: large }),
  ]);
  // Start a new slab (the carver is the process's), so the small payloads fit in what is left.
  while (takeFrameBytes(FRAME_SLAB_TAKE_BYTES_MAX).byteOffset !== 0);
  const frames = new FrameDecoder().push(stream);
  assert.equal(frames.length, 4);
  const bodies = frames.map((f) => f.body as { i: number; v: Uint8Array });
  const slab = bodies[0].v.buffer;
  for (const [i, body] of bodies.slice(0, 3).entries()) {
    assert.equal(body.i, i);
    assert.deepEqual(body.v, values[i]);
    // A follower keeps such views as values (decodeBatchEntries, Keyspace's shared buffers).
    assert.equal(body.v.buffer, slab, `frame ${i} shares the slab`);
    assert.equal(slab.byteLength, FRAME_SLAB_BYTES);
  }
  assert.ok(bodies[2].v.byteOffset > bodies[1].v.byteOffset);
  assert.ok(bodies[1].v.byteOffset > bodies[0].v.byteOffset);
  assert.deepEqual(bodies[3].v, large);
  assert.notEqual(bodies[3].v.buffer, slab, "over the slot limit: a buffer of its own");
});
