import assert from "node:assert/strict";
import { withTempDir } from "../../../tests/support/temp_dir.ts";
import { appendInput } from "../../../tests/support/entries.ts";
import { RECORD_BYTES_MAX, SEGMENT_HEADER_BYTES } from "../../common/limits.ts";
import { Random } from "../../common/random.ts";
import { type ScanOptions, scanSegment, type SegmentScan, SegmentStreamScan } from "./recovery.ts";
import { readRecord } from "./record.ts";
import { scanSegmentFile, Wal } from "./wal.ts";

/**
 * The bytes of a real segment: `count` appends of random sizes (some larger than the pieces
 * the tests read in), then the zeros preallocation left after them.
 */
async function segmentBytes(
  dir: string,
  random: Random,
  count: number,
  bigShare = 0.1,
): Promise<Uint8Array> {
  const wal = await Wal.open(dir, { preallocateBytes: 64 * 1024 });
  for (let seq = 1; seq <= count; seq++) {
    const size = random.chance(bigShare) ? 20_000 + random.int(200_000) : 16 + random.int(3_000);
    await wal.append(appendInput(seq, size));
  }
  await wal.close();
  const [segment] = wal.segments();
  return await Deno.readFile(`${dir}/${segment.fileName}`);
}

function options(isLast: boolean, expectedFirstLsn?: number): ScanOptions {
  return {
    fileName: "test.wal",
    isLast,
    expectedFirstLsn,
    recordBytesMax: RECORD_BYTES_MAX,
    tornWindowBytes: 8_192,
    indexIntervalBytes: 16_384,
  };
}

/** scanSegment's verdict on `bytes`: its scan, or the error it throws, as comparable text. */
function verdict(run: () => SegmentScan): SegmentScan | string {
  try {
    return run();
  } catch (error) {
    return `${(error as Error).name}: ${(error as Error).message}`;
  }
}

/** One of the ways a segment file is found: whole, or damaged in one of the ways recovery meets. */
function variant(bytes: Uint8Array, random: Random, kind: number): Uint8Array {
  const copy = bytes.slice();
  const at = random.int(copy.length);
  switch (kind) {
    case 0: // whole, zeros after the records
      return copy;
    case 1: // cut anywhere (a torn tail, or a segment that ends at a record)
      return copy.subarray(0, at);
    case 2: // one byte changed
      copy[at] ^= 1 + random.int(255);
      return copy;
    case 3: // a run of zeros laid over records
      copy.fill(0, at, Math.min(copy.length, at + random.int(4_096)));
      return copy;
    case 4: // bytes after the zeros
      copy[copy.length - 1 - random.int(1_000)] = 7;
      return copy;
    case 5: { // one whole record taken out: the records after it hold the wrong LSNs
      const starts: number[] = [];
      for (let offset = SEGMENT_HEADER_BYTES;;) {
        const read = readRecord(copy, offset, RECORD_BYTES_MAX);
        if (!read.ok) break;
        starts.push(offset);
        offset = read.next;
      }
      const i = random.int(starts.length - 1);
      const out = new Uint8Array(copy.length - (starts[i + 1] - starts[i]));
      out.set(copy.subarray(0, starts[i]));
      out.set(copy.subarray(starts[i + 1]), starts[i]);
      return out;
    }
    case 6: // only part of a header
      return copy.subarray(0, random.int(SEGMENT_HEADER_BYTES));
    default: // a header that was never written
      copy.fill(0, 0, SEGMENT_HEADER_BYTES);
      return copy;
  }
}

Deno.test("SegmentStreamScan fed in random pieces accepts every whole segment, with scanSegment's result", async () => {
  await withTempDir("recovery-test-", async (dir) => {
    const random = new Random(7);
    const bytes = await segmentBytes(dir, random, 400);
    // Whole, and cut at record ends (every end the index reaches, and the last one).
    const whole = scanSegment(bytes, options(true));
    assert.equal(whole.kind, "ok");
    if (whole.kind !== "ok") return;
    const cuts = [bytes.length, whole.validBytes, ...whole.index.map((p) => p.offset)];
    for (const cut of cuts) {
      const file = bytes.subarray(0, cut);
      for (let round = 0; round < 5; round++) {
        const scan = new SegmentStreamScan(options(true));
        let rest = new Uint8Array(0);
        for (let at = 0; at < file.length;) {
          const piece = file.subarray(at, Math.min(file.length, at + 1 + random.int(300_000)));
          at += piece.length;
          const pending = new Uint8Array(rest.length + piece.length);
          pending.set(rest);
          pending.set(piece, rest.length);
          const used = scan.push(pending);
          assert.notEqual(used, undefined, `gave up on a whole segment cut at ${cut}`);
          rest = pending.subarray(used!);
        }
        assert.deepEqual(scan.finish(rest), scanSegment(file, options(true)));
      }
    }
  });
});

Deno.test("scanSegmentFile gives scanSegment's verdict on whole and damaged segments, in any piece size", async () => {
  await withTempDir("recovery-test-", async (dir) => {
    const random = new Random(11);
    // With large records the read buffer grows past the pieces asked for; without, it stays.
    const segments = [
      await segmentBytes(`${dir}/big`, random, 300),
      await segmentBytes(`${dir}/small`, random, 300, 0),
    ];
    const path = `${dir}/variant.wal`;
    for (let round = 0; round < 320; round++) {
      const kind = Math.floor(round / 2) % 8;
      const file = variant(segments[round % 2], random, kind);
      await Deno.writeFile(path, file);
      const isLast = random.chance(0.5);
      const expected = random.chance(0.1) ? 2 : random.chance(0.5) ? 1 : undefined;
      const want = verdict(() => scanSegment(file, options(isLast, expected)));
      if (kind === 5) {
        // Both scans share the record check, so this one holds it to the LSNs on its own.
        assert.ok(
          typeof want === "string" || (want.kind === "ok" && want.tornTail !== undefined),
          `round ${round}: a segment missing a record read as whole`,
        );
      }
      const pieceBytes = [64, 4_096, 65_536, 1 << 20][random.int(4)];
      let got: SegmentScan | string;
      try {
        const { scan, fileBytes } = scanSegmentFile(
          path,
          options(isLast, expected),
          pieceBytes,
        );
        assert.equal(fileBytes, file.length);
        got = scan;
      } catch (error) {
        got = `${(error as Error).name}: ${(error as Error).message}`;
      }
      assert.deepEqual(got, want, `round ${round}, pieces of ${pieceBytes}`);
    }
  });
});
