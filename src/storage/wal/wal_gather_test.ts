import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import { WAL_GATHER_BATCH_ENTRIES } from "../../common/limits.ts";
import type { Clock } from "../../common/clock.ts";
import { type BatchInfo, type EntryInput, Wal, type WalOptions } from "./wal.ts";

function input(seq: number, origin = "n1"): EntryInput {
  return {
    origin,
    seq,
    hlc: seq,
    op: "append",
    key: "",
    value: new Uint8Array(64).fill(seq % 256),
    contentType: "",
    prevHlc: 0,
    prevOrigin: "",
  };
}

/** Resolves after `turns` turns of the event loop (macrotasks, as a socket read would arrive). */
async function turns(count: number): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Opens an inline-sync WAL in a temporary directory and records each batch's size and wait. */
async function withWal(
  options: WalOptions,
  body: (wal: Wal, batches: number[], waits: number[]) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "shanghai-wal-gather-" });
  const batches: number[] = [];
  const waits: number[] = [];
  const wal = await Wal.open(dir, {
    inlineSync: true,
    ...options,
    onDurable: (_entries, info: BatchInfo) => {
      batches.push(info.entries);
      waits.push(info.gatherMs);
    },
  });
  try {
    await body(wal, batches, waits);
  } finally {
    await wal.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("Wal lets a short batch wait for a writer expected back, so both share one fdatasync", async () => {
  let expected = 1;
  // A clock that stands still: the wait ends when the writer is back (or after the turn cap),
  // never because the real one moved. With it, the three turns below once took over the 10 ms
  // bound while the suite ran on both cores, and the batch went without the writer.
  const stopped: Clock = { nowMs: () => 0, monoMs: () => 0 };
  await withWal(
    { expectedWriters: () => expected, gatherMicros: 10_000, clock: stopped },
    async (wal, batches, waits) => {
      const first = wal.append(input(1));
      // The expected writer's append arrives a few event-loop turns later, as a request would.
      await turns(3);
      expected = 0;
      const second = wal.append(input(2));
      assert.deepEqual(await Promise.all([first, second]), [1, 2]);
      assert.deepEqual(batches, [2]);
      assert.ok(waits[0] > 0, "the batch reports that it waited");
    },
  );
});

Deno.test("Wal without expected writers, with gatherMicros 0 or without inlineSync cuts the batch at once", async () => {
  const never: WalOptions[] = [
    {},
    { expectedWriters: () => 1, gatherMicros: 0 },
    // Only the inline loop waits: a thread-pool sync already lets the event loop read meanwhile.
    { expectedWriters: () => 1, inlineSync: false },
  ];
  for (const options of never) {
    await withWal(options, async (wal, batches, waits) => {
      const first = wal.append(input(1));
      await turns(3);
      const second = wal.append(input(2));
      await Promise.all([first, second]);
      assert.deepEqual(batches, [1, 1], JSON.stringify(options));
      assert.deepEqual(waits, [0, 0]);
    });
  }
});

Deno.test("Wal waits for expected writers at most gatherMicros, and at most a bounded number of turns under a stopped clock", async () => {
  // A clock that moves 1 ms each time it is read: a 3 ms wait ends after a few turns.
  let now = 0;
  const ticking: Clock = { nowMs: () => now, monoMs: () => (now += 1) };
  let asked = 0;
  const expectedWriters = () => {
    asked++;
    return 1;
  };
  await withWal({ expectedWriters, gatherMicros: 3_000, clock: ticking }, async (wal, batches) => {
    assert.equal(await wal.append(input(1)), 1);
    assert.deepEqual(batches, [1]);
    assert.ok(asked >= 2 && asked < 20, `asked ${asked} times: the wait ignored its time bound`);
  });
  asked = 0;
  const stopped: Clock = { nowMs: () => 0, monoMs: () => 0 };
  await withWal({ expectedWriters, gatherMicros: 10_000, clock: stopped }, async (wal, batches) => {
    assert.equal(await wal.append(input(1)), 1);
    assert.deepEqual(batches, [1]);
    assert.ok(asked > 100 && asked <= 1_001, `asked ${asked} times under a stopped clock`);
  });
});

Deno.test("Wal never holds a batch with a peer's entries, nor one already long enough, for expected writers", async () => {
  let expected = 1;
  await withWal({ expectedWriters: () => expected, gatherMicros: 10_000 }, async (wal, batches) => {
    const remote = wal.appendBatch([input(1, "n2")], true);
    await turns(3);
    const local = wal.append(input(2));
    await Promise.all([remote, local]);
    assert.deepEqual(batches, [1, 1]);
  });
  expected = 1;
  await withWal({ expectedWriters: () => expected, gatherMicros: 10_000 }, async (wal, batches) => {
    const full = Array.from(
      { length: WAL_GATHER_BATCH_ENTRIES },
      (_, i) => wal.append(input(i + 1)),
    );
    await turns(3);
    const late = wal.append(input(WAL_GATHER_BATCH_ENTRIES + 1));
    await Promise.all([...full, late]);
    assert.deepEqual(batches, [WAL_GATHER_BATCH_ENTRIES, 1]);
  });
});

Deno.test("Wal refuses a gatherMicros out of range", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shanghai-wal-gather-" });
  try {
    await assert.rejects(() => Wal.open(dir, { gatherMicros: -1 }), /gatherMicros out of range/);
    await assert.rejects(
      () => Wal.open(dir, { gatherMicros: 10_001 }),
      /gatherMicros out of range/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
