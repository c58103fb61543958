import assert from "node:assert/strict";
import { SEGMENT_HEADER_BYTES } from "../../common/limits.ts";
import {
  decodeSegmentHeader,
  encodeSegmentHeader,
  parseSegmentFileName,
  SEGMENT_FORMAT_VERSION,
  segmentFileName,
} from "./segment.ts";

const header = {
  version: SEGMENT_FORMAT_VERSION,
  uuid: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
  createdMs: 1_763_000_000_123,
  firstLsn: 4_294_967_297,
};

Deno.test("segment header round-trips and is exactly 64 bytes starting with the magic", () => {
  const bytes = encodeSegmentHeader(header);
  assert.equal(bytes.length, SEGMENT_HEADER_BYTES);
  assert.deepEqual(Array.from(bytes.subarray(0, 6)), [0x53, 0x48, 0x41, 0x4e, 0x47, 0x41]);
  assert.deepEqual(decodeSegmentHeader(bytes), { ok: true, header });
});

Deno.test("decodeSegmentHeader() refuses a damaged, foreign or future header", () => {
  const bytes = encodeSegmentHeader(header);
  const flipped = bytes.slice();
  flipped[30] ^= 1;
  assert.deepEqual(decodeSegmentHeader(flipped), {
    ok: false,
    problem: "header checksum mismatch",
  });
  const foreign = bytes.slice();
  foreign[0] = 0;
  assert.deepEqual(decodeSegmentHeader(foreign), { ok: false, problem: "bad magic number" });
  assert.deepEqual(decodeSegmentHeader(bytes.subarray(0, 63)), {
    ok: false,
    problem: "header is truncated",
  });
  const future = encodeSegmentHeader({ ...header, version: 2 });
  assert.equal(decodeSegmentHeader(future).ok, false);
});

Deno.test("segment file names sort by first LSN", () => {
  const names = [10, 9, 1000, 1].map(segmentFileName).sort();
  assert.deepEqual(names.map(parseSegmentFileName), [1, 9, 10, 1000]);
  assert.equal(parseSegmentFileName("00000000000000000001.wal.tmp"), undefined);
  assert.equal(parseSegmentFileName("snapshot.wal"), undefined);
});
