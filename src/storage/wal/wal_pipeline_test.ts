import assert from "node:assert/strict";
import type { Entry } from "../../common/entry.ts";
import { Wal } from "./wal.ts";

function input(seq: number) {
  return {
    origin: "n1",
    seq,
    hlc: seq,
    op: "append" as const,
    key: "",
    value: new Uint8Array(100).fill(seq % 256),
    contentType: "",
    prevHlc: 0,
    prevOrigin: "",
  };
}

for (const inlineSync of [false, true]) {
  Deno.test(`Wal answers each writer after its batch is durable and handed to onDurable, in LSN order (inlineSync: ${inlineSync})`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "shanghai-wal-pipeline-" });
    try {
      const applied: number[] = [];
      const wal = await Wal.open(dir, {
        batchEntriesMax: 7,
        inlineSync,
        // About 30 KB of records: several segments, so sealing runs in both sync modes.
        segmentBytesMax: 8192,
        onDurable: (entries: readonly Entry[]) => {
          for (const entry of entries) applied.push(entry.lsn);
        },
      });
      const answered: number[] = [];
      let seq = 0;
      // 40 writers, 5 appends each: batches of up to 7 overlap the next batch's write and sync.
      await Promise.all(Array.from({ length: 40 }, async () => {
        for (let i = 0; i < 5; i++) {
          const lsn = await wal.append(input(++seq));
          assert.ok(
            lsn <= wal.lastLsn,
            `LSN ${lsn} answered before it was durable (${wal.lastLsn})`,
          );
          assert.ok(applied.includes(lsn), `LSN ${lsn} answered before onDurable saw it`);
          answered.push(lsn);
        }
      }));
      assert.deepEqual(applied, Array.from({ length: 200 }, (_, i) => i + 1));
      assert.deepEqual(new Set(answered).size, 200);
      await wal.close();
      const reopened = await Wal.open(dir);
      const entries = await reopened.read(1);
      assert.deepEqual(entries.map((e) => e.lsn), applied);
      assert.deepEqual(entries.map((e) => e.value![0]), entries.map((e) => e.seq % 256));
      assert.ok(reopened.segments().length >= 3, "the test should rotate segments");
      await reopened.close();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
