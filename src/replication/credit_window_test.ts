import assert from "node:assert/strict";
import { Random } from "../common/random.ts";
import { CreditWindow } from "./credit_window.ts";

Deno.test("CreditWindow pauses at zero credit and onAck() frees batches up to the offset", () => {
  const window = new CreditWindow({ creditEntries: 100, bytesMax: 1 << 20, batchesMax: 8 });
  assert.equal(window.hasCredit(), true);
  window.onSend(60, 60, 6000);
  assert.equal(window.entriesAvailable, 40);
  window.onSend(100, 40, 4000);
  assert.equal(window.hasCredit(), false);
  window.onAck(59);
  assert.equal(window.hasCredit(), false);
  window.onAck(60);
  assert.equal(window.inflightEntries, 40);
  assert.equal(window.hasCredit(), true);
  window.onAck(100, 20);
  assert.equal(window.credit, 20);
  assert.equal(window.inflightBatches, 0);
});

Deno.test("CreditWindow.onAck() returns the batches it frees with their send times", () => {
  const window = new CreditWindow({ creditEntries: 100, bytesMax: 1 << 20, batchesMax: 8 });
  window.onSend(10, 10, 1000, 5);
  window.onSend(20, 10, 1000, 7);
  window.onSend(30, 10, 1000);
  assert.deepEqual(window.onAck(9), []);
  assert.deepEqual(window.onAck(20), [
    { toLsn: 10, entries: 10, bytes: 1000, sentMs: 5 },
    { toLsn: 20, entries: 10, bytes: 1000, sentMs: 7 },
  ]);
  const [last] = window.onAck(30);
  assert.equal(last.toLsn, 30);
  assert.ok(Number.isNaN(last.sentMs));
});

Deno.test("CreditWindow bounds bytes and batches whatever the credit", () => {
  const window = new CreditWindow({ creditEntries: 1000, bytesMax: 1000, batchesMax: 2 });
  window.onSend(1, 1, 999);
  assert.equal(window.hasCredit(), true);
  window.onSend(2, 1, 1);
  assert.equal(window.hasCredit(), false);
  assert.throws(() => window.onSend(3, 1, 1), /no credit left/);
});

Deno.test("CreditWindow counters match a naive oracle over seeded random sends and acks", () => {
  for (let seed = 1; seed <= 200; seed++) {
    const random = new Random(seed);
    const window = new CreditWindow({ creditEntries: 50, bytesMax: 5000, batchesMax: 6 });
    const oracle: { toLsn: number; entries: number; bytes: number }[] = [];
    let lsn = 0;
    for (let step = 0; step < 200; step++) {
      if (random.chance(0.6) && window.hasCredit()) {
        const entries = random.int(Math.min(10, window.entriesAvailable) + 1);
        lsn += entries + random.int(3) + 1;
        const bytes = random.int(900) + 1;
        window.onSend(lsn, entries, bytes);
        oracle.push({ toLsn: lsn, entries, bytes });
      } else {
        const acked = lsn - random.int(20);
        window.onAck(acked);
        while (oracle.length > 0 && oracle[0].toLsn <= acked) oracle.shift();
      }
      assert.equal(window.inflightBatches, oracle.length, `seed ${seed}`);
      assert.equal(
        window.inflightEntries,
        oracle.reduce((s, b) => s + b.entries, 0),
        `seed ${seed}`,
      );
      assert.equal(window.inflightBytes, oracle.reduce((s, b) => s + b.bytes, 0), `seed ${seed}`);
    }
  }
});
