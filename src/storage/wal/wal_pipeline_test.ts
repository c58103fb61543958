import assert from "node:assert/strict";
import { encodeEntry, type Entry } from "../../common/entry.ts";
import { frameRecord } from "./record.ts";
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

Deno.test("Wal with inlineSync cuts a batch only after every ready socket read has appended", async () => {
  // What `serve` relies on: requests that arrive while the thread stands still in fdatasync
  // are all read before the next batch is cut, so they share it instead of one batch each.
  const dir = await Deno.makeTempDir({ prefix: "shanghai-wal-gather-" });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const clients: Deno.TcpConn[] = [];
  const served: Promise<void>[] = [];
  try {
    const batches: number[] = [];
    const wal = await Wal.open(dir, {
      inlineSync: true,
      onDurable: (entries: readonly Entry[]) => batches.push(entries.length),
    });
    const CLIENTS = 10;
    const { port } = listener.addr as Deno.NetAddr;
    const connecting = Array.from(
      { length: CLIENTS },
      () => Deno.connect({ hostname: "127.0.0.1", port }),
    );
    let seq = 0;
    for (let i = 0; i < CLIENTS; i++) {
      const conn = await listener.accept();
      served.push((async () => {
        const byte = new Uint8Array(1);
        if (await conn.read(byte) === 1) await wal.append(input(++seq));
        conn.close();
      })());
    }
    clients.push(...await Promise.all(connecting));
    // Every request is on the wire before the server's event loop turns again.
    for (const client of clients) await client.write(new Uint8Array([1]));
    const until = performance.now() + 20;
    while (performance.now() < until) { /* the thread is busy, as in a long fdatasync */ }
    await Promise.all(served);
    assert.deepEqual(batches, [CLIENTS], `batches of ${batches.join(", ")} entries`);
    await wal.close();
  } finally {
    for (const client of clients) client.close();
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});

for (const inlineSync of [false, true]) {
  Deno.test(`Wal hands each batch to onWritten before its sync and onDurable, and a true answer lets microtasks run first (inlineSync: ${inlineSync})`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "shanghai-wal-written-" });
    try {
      const events: string[] = [];
      let wal: Wal | undefined = undefined;
      wal = await Wal.open(dir, {
        batchEntriesMax: 4,
        inlineSync,
        onWritten: (entries: readonly Entry[]) => {
          const first = entries[0].lsn;
          const last = entries[entries.length - 1].lsn;
          // Written, not yet durable (with a thread-pool sync the previous batch may not be
          // either: it is answered while this one is written).
          assert.equal(wal!.writtenLsn, last);
          assert.ok(wal!.lastLsn < first, `${first}-${last} durable at onWritten`);
          events.push(`written ${first}-${last}`);
          // A chain of microtasks started here runs before the sync when the answer is true.
          Promise.resolve().then(() => Promise.resolve()).then(() =>
            events.push(`turn after ${last}`)
          );
          return true;
        },
        onDurable: (entries: readonly Entry[]) => {
          events.push(`durable ${entries[0].lsn}-${entries[entries.length - 1].lsn}`);
        },
      });
      await Promise.all(Array.from({ length: 8 }, (_, i) => wal!.append(input(i + 1))));
      assert.equal(wal.writtenLsn, 8);
      assert.equal(wal.lastLsn, 8);
      const written = events.filter((e) => e.startsWith("written"));
      const durable = events.filter((e) => e.startsWith("durable"));
      assert.deepEqual(written.map((e) => e.slice(8)), durable.map((e) => e.slice(8)));
      for (const batch of written) {
        const range = batch.slice(8);
        assert.ok(
          events.indexOf(batch) < events.indexOf(`durable ${range}`),
          `${range} reached onDurable before onWritten: ${events.join(", ")}`,
        );
      }
      if (inlineSync) {
        // The inline sync let microtasks run first, so each batch's chain ended before it.
        for (const batch of written) {
          const range = batch.slice(8);
          const last = range.split("-")[1];
          assert.ok(
            events.indexOf(`turn after ${last}`) < events.indexOf(`durable ${range}`),
            `the sync of ${range} did not let the loop turn: ${events.join(", ")}`,
          );
        }
      }
      await wal.close();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("Wal hands onWritten each entry's record as written: the bytes frameRecord(encodeEntry()) gives, kept past the next batch", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shanghai-wal-records-" });
  try {
    const seen: { entry: Entry; record: Uint8Array }[] = [];
    let late: (() => Uint8Array[]) | undefined;
    const wal = await Wal.open(dir, {
      batchEntriesMax: 3,
      inlineSync: true,
      onWritten: (entries: readonly Entry[], records: () => Uint8Array[]) => {
        const framed = records();
        assert.equal(framed.length, entries.length);
        assert.equal(records(), framed, "one copy per batch, however often asked");
        entries.forEach((entry, i) => seen.push({ entry, record: framed[i] }));
        if (late === undefined && entries[0].lsn > 1) late = records;
        return false;
      },
    });
    // Entries the direct encoder writes and ones it leaves to cbor-x (a non-ASCII key).
    await Promise.all(Array.from({ length: 10 }, (_, i) =>
      wal.append({
        ...input(i + 1),
        op: "put" as const,
        key: i % 3 === 0 ? `clé-${i}` : `key-${i}`,
        contentType: "application/octet-stream",
      })));
    // Asked again after its call, it still answers what it copied then.
    const again = late!();
    assert.ok(again.length > 0);
    await wal.close();
    assert.equal(seen.length, 10);
    // Checked after every batch was written (the WAL reuses its batch buffer).
    for (const { entry, record } of seen) {
      assert.deepEqual(record, frameRecord(encodeEntry(entry)), `record of LSN ${entry.lsn}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Wal's records() refuses a first call after onWritten returned (the batch buffer is reused by then)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shanghai-wal-records-late-" });
  try {
    let kept: (() => Uint8Array[]) | undefined;
    const wal = await Wal.open(dir, {
      inlineSync: true,
      onWritten: (_entries: readonly Entry[], records: () => Uint8Array[]) => {
        kept ??= records;
        return false;
      },
    });
    await wal.append(input(1));
    await wal.append(input(2));
    await wal.close();
    assert.throws(() => kept!(), /inside onWritten/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
