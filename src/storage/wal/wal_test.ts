import assert from "node:assert/strict";
import { withTempDir } from "../../../tests/support/temp_dir.ts";
import { ClosedError, CorruptionError } from "../../common/errors.ts";
import { appendInput, seqOf } from "../../../tests/support/entries.ts";
import { decodeEntry } from "../../common/entry.ts";
import { RECORD_BYTES_MAX, SEGMENT_HEADER_BYTES } from "../../common/limits.ts";
import { Random } from "../../common/random.ts";
import { readRecord } from "./record.ts";
import { LsnCompactedError, ReadBuffers, Wal } from "./wal.ts";
import { PREALLOCATE_BYTES, runWithFileBytesMax } from "../_zero_write_failure_child.ts";

const withDir = (fn: (dir: string) => Promise<void>) => withTempDir("wal-test-", fn);

async function segmentFiles(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.name.endsWith(".wal")) names.push(e.name);
  return names.sort();
}

/**
 * Reopens a WAL of 20 appends whose last record was torn: recovery cuts it with one repair,
 * keeps 19 and appends again from LSN 20.
 */
async function assertTornLastRecordCut(dir: string): Promise<void> {
  const repairs: string[] = [];
  const reopened = await Wal.open(dir, { onRepair: (m) => repairs.push(m) });
  assert.equal(reopened.lastLsn, 19);
  assert.equal(repairs.length, 1);
  assert.match(repairs[0], /Truncated torn tail/);
  assert.equal(await reopened.append(appendInput(20)), 20);
  assert.equal((await reopened.read(1, { limit: 100 })).length, 20);
  await reopened.close();
}

Deno.test("Wal.append() assigns dense LSNs from 1 and read() returns entries in order", async () => {
  await withDir(async (dir) => {
    const wal = await Wal.open(dir);
    assert.equal(wal.lastLsn, 0);
    for (let i = 1; i <= 10; i++) assert.equal(await wal.append(appendInput(i)), i);
    const all = await wal.read(1);
    assert.deepEqual(all.map((e) => e.lsn), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual(all.map((e) => seqOf(e.value)), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual((await wal.read(4, { limit: 3 })).map((e) => e.lsn), [4, 5, 6]);
    assert.deepEqual(await wal.read(11), []);
    await wal.close();
  });
});

Deno.test("Wal.open() with nextLsnAtLeast past its records removes the covered segments and goes on there", async () => {
  await withDir(async (dir) => {
    const wal = await Wal.open(dir, { segmentBytesMax: 4096 });
    for (let i = 1; i <= 10; i++) await wal.append(appendInput(i, 1024));
    await wal.close();
    assert.ok((await segmentFiles(dir)).length > 1, "the records span segments");
    // Up to one past what it holds: nothing changes.
    const same = await Wal.open(dir, { nextLsnAtLeast: 11, onRepair: () => assert.fail() });
    assert.deepEqual([same.firstLsn, same.lastLsn], [1, 10]);
    await same.close();
    const repairs: string[] = [];
    const moved = await Wal.open(dir, { nextLsnAtLeast: 21, onRepair: (m) => repairs.push(m) });
    assert.deepEqual([moved.firstLsn, moved.lastLsn], [21, 20]);
    assert.equal(repairs.length, 1);
    assert.match(repairs[0], /ends at LSN 10 but must go on at 21/);
    assert.deepEqual(await segmentFiles(dir), [moved.segments()[0].fileName]);
    assert.equal(await moved.append(appendInput(21)), 21);
    await moved.close();
    const reopened = await Wal.open(dir, { nextLsnAtLeast: 21 });
    assert.deepEqual((await reopened.read(21)).map((e) => e.lsn), [21]);
    await reopened.close();
  });
});

Deno.test("Wal group commit: concurrent appends share batches and all resolve after their batch", async () => {
  await withDir(async (dir) => {
    const batches: number[] = [];
    let durable = 0;
    const wal = await Wal.open(dir, {
      onDurable: (entries) => {
        batches.push(entries.length);
        durable = entries[entries.length - 1].lsn;
      },
    });
    const lsns = await Promise.all(
      Array.from({ length: 500 }, (_, i) =>
        wal.append(appendInput(i + 1)).then((lsn) => {
          // Answered only after the batch holding it is durable.
          assert.ok(durable >= lsn);
          return lsn;
        })),
    );
    assert.deepEqual(lsns, Array.from({ length: 500 }, (_, i) => i + 1));
    assert.equal(batches.reduce((a, b) => a + b, 0), 500);
    assert.ok(batches.length < 500, `expected shared batches, got ${batches.length}`);
    assert.ok(Math.max(...batches) <= 100, "a batch holds at most 100 entries by default");
    await wal.close();
  });
});

Deno.test("Wal calls beforeSync once per batch, after its write and before its sync", async () => {
  await withDir(async (dir) => {
    const calls: { written: number; durable: number }[] = [];
    let durable = 0;
    let batches = 0;
    const wal: Wal = await Wal.open(dir, {
      beforeSync: () => calls.push({ written: wal.writtenLsn, durable }),
      onDurable: (entries) => {
        batches++;
        durable = entries[entries.length - 1].lsn;
      },
    });
    await Promise.all(Array.from({ length: 300 }, (_, i) => wal.append(appendInput(i + 1))));
    assert.equal(calls.length, batches);
    // Each call: its batch written, the one before it durable, itself not yet.
    for (const call of calls) assert.ok(call.written > call.durable);
    assert.equal(calls[calls.length - 1].written, 300);
    await wal.close();
  });
});

Deno.test("Wal.appendBatch() numbers entries in order, beside single appends, and resolves once the last is durable", async () => {
  await withDir(async (dir) => {
    let durable = 0;
    const wal = await Wal.open(dir, {
      batchEntriesMax: 10,
      onDurable: (entries) => durable = entries[entries.length - 1].lsn,
    });
    const single = wal.append(appendInput(1));
    // 25 entries span three WAL batches of at most 10; one answer covers them all.
    const batch = wal.appendBatch(Array.from({ length: 25 }, (_, i) => appendInput(i + 2)))
      .then((lsn) => {
        assert.ok(durable >= lsn, "answered before its last entry was durable");
        return lsn;
      });
    const after = wal.append(appendInput(27));
    assert.deepEqual(await Promise.all([single, batch, after]), [1, 26, 27]);
    const all = await wal.read(1);
    assert.deepEqual(all.map((e) => e.lsn), Array.from({ length: 27 }, (_, i) => i + 1));
    assert.deepEqual(all.map((e) => seqOf(e.value)), Array.from({ length: 27 }, (_, i) => i + 1));
    // An empty batch writes nothing and answers the last LSN.
    assert.equal(await wal.appendBatch([]), 27);
    await wal.close();
    // Refused whole: nothing of a batch offered to a closed WAL is numbered.
    await assert.rejects(() => wal.appendBatch([appendInput(28), appendInput(29)]), ClosedError);
    const reopened = await Wal.open(dir);
    assert.equal(reopened.lastLsn, 27);
    await reopened.close();
  });
});

Deno.test("Wal group commit: a peer's entries fill a batch to the replicated bound, local ones stop at the entry bound", async () => {
  await withDir(async (dir) => {
    const batches: { lsn: number; entries: number }[] = [];
    const wal = await Wal.open(dir, {
      batchEntriesMax: 10,
      replicatedBatchEntriesMax: 50,
      onDurable: (entries) => batches.push({ lsn: entries[0].lsn, entries: entries.length }),
    });
    const append = (from: number, count: number, replicated: boolean) =>
      Array.from({ length: count }, (_, i) => wal.append(appendInput(from + i), replicated));
    // 1 goes out alone; 2..71 queue behind it: 60 replicated, then 10 local.
    const first = wal.append(appendInput(1));
    const queued = [...append(2, 60, true), ...append(62, 10, false)];
    await Promise.all([first, ...queued]);
    assert.deepEqual(batches, [
      { lsn: 1, entries: 1 },
      // Replicated entries fill a batch to 50; the next 10 fill the next one to 10, where the
      // local ones cannot join (each joins only among a batch's first 10).
      { lsn: 2, entries: 50 },
      { lsn: 52, entries: 10 },
      { lsn: 62, entries: 10 },
    ]);
    // Local entries first, replicated ones behind them: wherever the batches fall, a local
    // entry sits among a batch's first 10 and any entry among its first 50, and replicated
    // entries join a batch that holds local ones.
    batches.length = 0;
    const replicated = new Set(Array.from({ length: 60 }, (_, i) => 88 + i));
    await Promise.all([...append(72, 16, false), ...append(88, 60, true)]);
    assert.equal(batches.reduce((sum, b) => sum + b.entries, 0), 76);
    let mixed = false;
    for (const { lsn, entries } of batches) {
      assert.ok(entries <= 50, `batch at ${lsn} holds ${entries}`);
      const locals = Array.from({ length: entries }, (_, i) => lsn + i).filter((l) =>
        !replicated.has(l)
      );
      for (const l of locals) assert.ok(l - lsn < 10, `local LSN ${l} at ${l - lsn} of ${lsn}`);
      if (locals.length > 0 && locals.length < entries) mixed = true;
    }
    assert.ok(mixed, `no batch mixes local and replicated entries: ${JSON.stringify(batches)}`);
    // A bound below batchEntriesMax is raised to it.
    const lowBatches: number[] = [];
    const low = await Wal.open(`${dir}/low`, {
      batchEntriesMax: 10,
      replicatedBatchEntriesMax: 2,
      onDurable: (entries) => lowBatches.push(entries.length),
    });
    await Promise.all(Array.from({ length: 25 }, (_, i) => low.append(appendInput(i + 1), true)));
    assert.deepEqual(lowBatches, [1, 10, 10, 4]);
    await low.close();
    await wal.close();
  });
});

Deno.test("Wal rotates segments at the size limit and reads across them after reopening", async () => {
  await withDir(async (dir) => {
    const wal = await Wal.open(dir, { segmentBytesMax: 64 * 1024, batchEntriesMax: 10 });
    for (let i = 1; i <= 300; i++) await wal.append(appendInput(i, 1024));
    const files = await segmentFiles(dir);
    assert.ok(files.length >= 4, `expected rotation, got ${files}`);
    for (const s of wal.segments()) {
      assert.ok(s.bytes <= 64 * 1024, `${s.fileName} is ${s.bytes} bytes`);
    }
    await wal.close();
    const reopened = await Wal.open(dir, { segmentBytesMax: 64 * 1024 });
    assert.equal(reopened.lastLsn, 300);
    const entries = await reopened.read(1, { limit: 1000 });
    assert.deepEqual(
      entries.map((e) => seqOf(e.value)),
      Array.from({ length: 300 }, (_, i) => i + 1),
    );
    // Reads that start inside a later segment, and mid-way between sparse index points.
    for (const from of [57, 123, 250, 300]) {
      const got = await reopened.read(from, { limit: 5 });
      assert.equal(got[0].lsn, from);
    }
    assert.equal(await reopened.append(appendInput(301)), 301);
    await reopened.close();
  });
});

Deno.test("Wal.readFramed() returns each entry's checked record with its identity, across segments", async () => {
  await withDir(async (dir) => {
    const wal = await Wal.open(dir, { segmentBytesMax: 64 * 1024, batchEntriesMax: 10 });
    for (let i = 1; i <= 200; i++) {
      // Every fifth entry from an origin the peek declines (non-ASCII): it is decoded instead.
      const input = appendInput(i, 1024);
      await wal.append(i % 5 === 0 ? { ...input, origin: "nœud" } : input);
    }
    for (const [from, limit] of [[1, 1000], [57, 5], [123, 40], [200, 10]]) {
      const framed = await wal.readFramed(from, { limit });
      const entries = await wal.read(from, { limit });
      assert.equal(framed.length, entries.length);
      for (const [i, record] of framed.entries()) {
        const entry = entries[i];
        assert.deepEqual([record.lsn, record.origin, record.seq], [
          entry.lsn,
          entry.origin,
          entry.seq,
        ]);
        const read = readRecord(record.frame, 0, RECORD_BYTES_MAX);
        assert.ok(
          read.ok && read.next === record.frame.length,
          `LSN ${record.lsn}: one whole record`,
        );
        assert.deepEqual(decodeEntry(read.data), entry);
      }
    }
    await wal.close();
  });
});

Deno.test("Wal.readFramed() with ReadBuffers reads into the same memory each time, and a read past them into fresh buffers", async () => {
  await withDir(async (dir) => {
    const wal = await Wal.open(dir, { segmentBytesMax: 1024 * 1024, batchEntriesMax: 100 });
    for (let i = 1; i <= 1200; i++) wal.append(appendInput(i, 1024)).catch(() => {});
    await wal.append(appendInput(1201, 1024));
    const buffers = new ReadBuffers(2);
    const check = async (from: number, limit: number) => {
      const framed = await wal.readFramed(from, { limit, buffers });
      const entries = await wal.read(from, { limit });
      assert.equal(framed.length, entries.length);
      for (const [i, record] of framed.entries()) {
        const read = readRecord(record.frame, 0, RECORD_BYTES_MAX);
        assert.ok(read.ok && read.next === record.frame.length);
        assert.deepEqual(decodeEntry(read.data), entries[i]);
      }
      return framed;
    };
    // One chunk (256 KiB holds about 240 of these records), then again: the same buffer.
    const first = await check(1, 100);
    const second = await check(501, 100);
    assert.equal(second[0].frame.buffer, first[0].frame.buffer);
    // Over 1.2 MiB: the first two chunks go to the kept buffers, the rest to fresh ones.
    const long = await check(1, 1200);
    const memories = [...new Set(long.map((r) => r.frame.buffer))];
    assert.ok(memories.length >= 5, `${memories.length} chunks`);
    assert.equal(memories[0], first[0].frame.buffer);
    assert.equal(buffers.bytesKept, 2 * 256 * 1024);
    const again = [...new Set((await check(1, 1200)).map((r) => r.frame.buffer))];
    assert.deepEqual(again.slice(0, 2), memories.slice(0, 2));
    for (const fresh of again.slice(2)) assert.ok(!memories.includes(fresh));
    await wal.close();
  });
});

Deno.test("Wal reads that go on where the last stopped agree with one whole read, over open handles and hints", async () => {
  await withDir(async (dir) => {
    // Files of this WAL open in the process (other tests run beside this one).
    const openFiles = () =>
      [...Deno.readDirSync("/proc/self/fd")].filter((fd) => {
        try {
          return Deno.readLinkSync(`/proc/self/fd/${fd.name}`).startsWith(dir);
        } catch {
          return false; // closed meanwhile
        }
      });
    // Small segments (more than the read handles kept open) and entries of mixed sizes, so
    // reads cross segments, evict handles and end between index points.
    const wal = await Wal.open(dir, { segmentBytesMax: 48 * 1024, batchEntriesMax: 7 });
    const rng = new Random(17);
    const random = () => rng.next();
    const count = 400;
    for (let i = 1; i <= count; i++) {
      await wal.append(appendInput(i, 1 + Math.floor(random() * 3000)));
    }
    assert.ok(wal.segments().length > 8, `${wal.segments().length} segments`);
    const whole = await wal.read(1, { limit: count });
    assert.equal(whole.length, count);
    // Three readers interleaved, each going on from its own last LSN with its own limits.
    const cursors = [1, 90, 250];
    const seen: number[][] = [[], [], []];
    while (cursors.some((c) => c <= count)) {
      for (let r = 0; r < cursors.length; r++) {
        if (cursors[r] > count) continue;
        const limit = 1 + Math.floor(random() * 40);
        const framed = r === 1 && random() < 0.5;
        const got = framed
          ? (await wal.readFramed(cursors[r], { limit })).map((f) => f.lsn)
          : (await wal.read(cursors[r], { limit, bytesMax: 1 + Math.floor(random() * 60_000) }))
            .map((e) => e.lsn);
        assert.ok(got.length > 0 && got.length <= limit);
        assert.deepEqual(got, got.map((_, i) => cursors[r] + i), "consecutive from the cursor");
        seen[r].push(...got);
        cursors[r] += got.length;
      }
    }
    for (const [r, from] of [1, 90, 250].entries()) {
      assert.deepEqual(seen[r], whole.slice(from - 1).map((e) => e.lsn));
    }
    // Retention under open handles and hints: reads below fail typed, reads above go on.
    const removed = await wal.removeBefore(200);
    assert.ok(removed.length > 0);
    await assert.rejects(() => wal.read(1), LsnCompactedError);
    assert.deepEqual(await wal.read(300, { limit: 5 }), whole.slice(299, 304));
    await wal.close();
    // A read after close opens the file for itself and keeps nothing open.
    assert.deepEqual(await wal.read(count - 2, { limit: 10 }), whole.slice(count - 3));
    assert.deepEqual(openFiles(), [], "every read handle closed");
  });
});

Deno.test("Wal.read() of several MiB lets timers run between synchronous chunk reads", async () => {
  await withDir(async (dir) => {
    const wal = await Wal.open(dir);
    const appends: Promise<number>[] = [];
    for (let i = 1; i <= 4096; i++) appends.push(wal.append(appendInput(i, 1024)));
    await Promise.all(appends);
    // Chunks are read on the JavaScript thread; past WAL_READ_SYNC_BYTES the scan yields, so
    // a timer set before a 4 MiB read fires before the read ends.
    let timerFired = false;
    const timer = setTimeout(() => timerFired = true, 0);
    const entries = await wal.read(1, { limit: 5000 });
    const firedDuringRead = timerFired;
    clearTimeout(timer);
    assert.equal(entries.length, 4096);
    assert.deepEqual(entries.map((e) => seqOf(e.value)), entries.map((_, i) => i + 1));
    assert.ok(firedDuringRead, "a 4 MiB scan never let the event loop run");
    await wal.close();
  });
});

Deno.test("Wal recovery truncates a torn tail and keeps appending after the last whole entry", async () => {
  await withDir(async (dir) => {
    const wal = await Wal.open(dir);
    for (let i = 1; i <= 20; i++) await wal.append(appendInput(i, 100));
    const size = wal.segments()[0].bytes;
    await wal.close();
    const [name] = await segmentFiles(dir);
    const path = `${dir}/${name}`;
    // A crash mid-write: the last record is cut and junk follows.
    await Deno.truncate(path, size - 30);
    const file = await Deno.open(path, { append: true });
    await file.write(new Uint8Array([0xde, 0xad, 0xbe, 0xef, 0, 0, 0]));
    file.close();
    await assertTornLastRecordCut(dir);
  });
});

Deno.test("Wal recovery cuts a torn batch that preallocated zeros follow", async () => {
  await withDir(async (dir) => {
    const wal = await Wal.open(dir, { preallocateBytes: 64 * 1024 });
    for (let i = 1; i <= 20; i++) await wal.append(appendInput(i, 100));
    const size = wal.segments()[0].bytes;
    await wal.close();
    const [name] = await segmentFiles(dir);
    const path = `${dir}/${name}`;
    const bytes = await Deno.readFile(path);
    assert.ok(bytes.length > size, "the segment holds preallocated zeros after its records");
    // The last record half overwritten, the next batch's first bytes landed, zeros after.
    bytes.set([0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5], size - 30);
    await Deno.writeFile(path, bytes);
    await assertTornLastRecordCut(dir);
  });
});

Deno.test("Wal preallocation: zeros ahead of the writer never cost a record, and sealed segments hold only records", async () => {
  await withDir(async (dir) => {
    // Tiny preallocation and segments, so zero writes race batches and rotations often.
    const options = { preallocateBytes: 4096, segmentBytesMax: 64 * 1024 };
    const wal = await Wal.open(dir, options);
    const writers = Array.from({ length: 8 }, async (_, w) => {
      for (let i = 0; i < 60; i++) await wal.append(appendInput(w * 1000 + i, 300 + 97 * (i % 7)));
    });
    await Promise.all(writers);
    const segments = wal.segments();
    await wal.close();
    assert.ok(segments.length > 3, "several rotations happened");
    for (const segment of segments.slice(0, -1)) {
      const size = (await Deno.stat(`${dir}/${segment.fileName}`)).size;
      assert.equal(size, segment.bytes, `sealed ${segment.fileName} is cut to its records`);
    }
    const repairs: string[] = [];
    const reopened = await Wal.open(dir, { ...options, onRepair: (m) => repairs.push(m) });
    assert.deepEqual(repairs, [], "preallocated zeros are not a torn tail");
    assert.equal(reopened.lastLsn, 480);
    const entries = [];
    for (let lsn = 1; lsn <= 480;) {
      const page = await reopened.read(lsn, { limit: 100 });
      entries.push(...page);
      lsn = page[page.length - 1].lsn + 1;
    }
    assert.deepEqual(entries.map((e) => e.lsn), Array.from({ length: 480 }, (_, i) => i + 1));
    assert.equal(await reopened.append(appendInput(9999)), 481);
    await reopened.close();
  });
});

Deno.test("Wal recovery drops a last segment whose header was never completed", async () => {
  await withDir(async (dir) => {
    const wal = await Wal.open(dir);
    await wal.append(appendInput(1));
    await wal.close();
    await Deno.writeFile(`${dir}/00000000000000000002.wal`, new Uint8Array(20));
    const reopened = await Wal.open(dir);
    assert.equal(reopened.lastLsn, 1);
    assert.deepEqual(await segmentFiles(dir), ["00000000000000000001.wal"]);
    await reopened.close();
  });
});

Deno.test("Wal refuses to start over damage in a sealed segment, naming file and offset", async () => {
  await withDir(async (dir) => {
    const wal = await Wal.open(dir, { segmentBytesMax: 64 * 1024, batchEntriesMax: 10 });
    for (let i = 1; i <= 200; i++) await wal.append(appendInput(i, 1024));
    await wal.close();
    const [first] = await segmentFiles(dir);
    const path = `${dir}/${first}`;
    const bytes = await Deno.readFile(path);
    const offset = SEGMENT_HEADER_BYTES + 3 * (8 + 1024 + 40) + 20;
    bytes[offset] ^= 0xff;
    await Deno.writeFile(path, bytes);
    await assert.rejects(() => Wal.open(dir), (error: unknown) => {
      assert.ok(error instanceof CorruptionError);
      assert.equal(error.file, first);
      assert.ok(error.offset > SEGMENT_HEADER_BYTES && error.offset <= offset);
      assert.match(
        error.message,
        new RegExp(`Cannot open "${first}": checksum mismatch at byte \\d+\\. Stop the node`),
      );
      return true;
    });
  });
});

Deno.test("Wal refuses a sealed segment whose last records were zeroed: zeros end data only where the next segment agrees", async () => {
  await withDir(async (dir) => {
    const wal = await Wal.open(dir, { segmentBytesMax: 64 * 1024, batchEntriesMax: 10 });
    for (let i = 1; i <= 200; i++) await wal.append(appendInput(i, 1024));
    const [first] = wal.segments();
    await wal.close();
    const path = `${dir}/${first.fileName}`;
    const bytes = await Deno.readFile(path);
    // Damage that looks like preallocated space: the segment's last 3 records read as zeros.
    const starts: number[] = [];
    const view = new DataView(bytes.buffer);
    for (let at = SEGMENT_HEADER_BYTES; at < bytes.length; at += 8 + view.getUint32(at, true)) {
      starts.push(at);
    }
    bytes.fill(0, starts[starts.length - 3]);
    await Deno.writeFile(path, bytes);
    await assert.rejects(
      () => Wal.open(dir),
      (error: unknown) =>
        error instanceof CorruptionError && error.file === first.fileName &&
        /next segment starts at/.test(error.message),
    );
  });
});

Deno.test("Wal refuses damage before the tail of the last segment when valid data follows", async () => {
  await withDir(async (dir) => {
    // A torn window of one small batch: everything further on was durable once.
    const wal = await Wal.open(dir, { batchBytesMax: 64 * 1024 });
    for (let i = 1; i <= 100; i++) await wal.append(appendInput(i, 4096));
    await wal.close();
    const [name] = await segmentFiles(dir);
    const path = `${dir}/${name}`;
    const bytes = await Deno.readFile(path);
    bytes[SEGMENT_HEADER_BYTES + 200] ^= 0xff;
    await Deno.writeFile(path, bytes);
    await assert.rejects(
      () => Wal.open(dir, { batchBytesMax: 64 * 1024 }),
      (error: unknown) =>
        error instanceof CorruptionError && /valid records after it/.test(error.message),
    );
    // Nothing was truncated by the refused start.
    assert.equal((await Deno.stat(path)).size, bytes.length);
  });
});

Deno.test("Wal.removeBefore() deletes whole sealed segments and reads below them fail typed", async () => {
  await withDir(async (dir) => {
    const wal = await Wal.open(dir, { segmentBytesMax: 64 * 1024, batchEntriesMax: 10 });
    for (let i = 1; i <= 200; i++) await wal.append(appendInput(i, 1024));
    const before = wal.segments();
    const removed = await wal.removeBefore(100);
    assert.ok(removed.length > 0);
    assert.ok(removed.every((s) => s.lastLsn < 100));
    assert.equal(wal.segments().length, before.length - removed.length);
    assert.ok(wal.firstLsn <= 100);
    await assert.rejects(() => wal.read(1), LsnCompactedError);
    assert.equal((await wal.read(100, { limit: 1 }))[0].lsn, 100);
    await wal.close();
    const reopened = await Wal.open(dir, { verifyFromLsn: 150 });
    assert.equal(reopened.firstLsn, wal.firstLsn);
    assert.equal(reopened.lastLsn, 200);
    // Segments skipped at open (covered by a snapshot) are indexed lazily on first read.
    assert.equal(
      (await reopened.read(reopened.firstLsn + 3, { limit: 1 }))[0].lsn,
      reopened.firstLsn + 3,
    );
    await reopened.close();
  });
});

Deno.test("Wal.append() after close() rejects with ClosedError", async () => {
  await withDir(async (dir) => {
    const wal = await Wal.open(dir);
    const pending = wal.append(appendInput(1));
    await wal.close();
    assert.equal(await pending, 1);
    await assert.rejects(() => wal.append(appendInput(2)), ClosedError);
  });
});

Deno.test("Wal preallocation: a failed zero write turns it off once, and appends go on and survive reopening", async () => {
  await withDir(async (dir) => {
    // The child's files cannot grow past 256 KiB: the zero write that would cross it fails
    // (EFBIG) after three that succeeded, while the records stay below it.
    const { stdout } = await runWithFileBytesMax(256 * 1024, { mode: "wal", dir });
    const child: { lastLsn: number; failures: string[] } = JSON.parse(stdout);
    assert.equal(child.failures.length, 1, "the hook fires once, then preallocation is off");
    assert.match(child.failures[0], /File too large/);
    assert.ok(child.lastLsn > 200, `appends went on past the failure (${child.lastLsn})`);
    const segment = (await segmentFiles(dir))[0];
    assert.ok(
      (await Deno.stat(`${dir}/${segment}`)).size <= 256 * 1024,
      "the zero writer met the limit before the records did",
    );

    const repairs: string[] = [];
    const failures: unknown[] = [];
    const reopened = await Wal.open(dir, {
      preallocateBytes: PREALLOCATE_BYTES,
      onRepair: (m) => repairs.push(m),
      onPreallocateFailed: (error) => failures.push(error),
    });
    assert.deepEqual(repairs, [], "the zeros a failed write left are not a torn tail");
    assert.equal(reopened.lastLsn, child.lastLsn, "every acknowledged append is durable");
    const entries = [];
    for (let lsn = 1; lsn <= child.lastLsn;) {
      const page = await reopened.read(lsn, { limit: 100 });
      entries.push(...page);
      lsn = page[page.length - 1].lsn + 1;
    }
    assert.deepEqual(entries.map((e) => seqOf(e.value)).sort((a, b) => a - b), [
      ...Array.from({ length: child.lastLsn }, (_, i) => i + 1),
    ]);
    assert.equal(await reopened.append(appendInput(child.lastLsn + 1)), child.lastLsn + 1);
    await reopened.close();
    assert.deepEqual(failures, [], "with room again, reopening turns preallocation back on");
  });
});

Deno.test("Wal fails stop when a batch's write fails: its appends and every later one reject, nothing acknowledged is lost", async () => {
  await withDir(async (dir) => {
    // Without preallocation the records themselves meet the child's 256 KiB file limit (EFBIG,
    // as a full disk gives ENOSPC): part of a batch may reach the file, none of it is answered.
    const { stdout } = await runWithFileBytesMax(256 * 1024, { mode: "records", dir });
    const child: { acked: number[]; errors: string[]; after: string } = JSON.parse(stdout);
    assert.ok(child.acked.length > 200, `appends before the failure (${child.acked.length})`);
    assert.ok(child.errors.length > 0, "the batch that met the limit was rejected");
    for (const message of child.errors) assert.match(message, /Cannot append.*restart the node/);
    assert.match(child.after, /WAL stopped after a failed write or sync .*File too large/);

    const repairs: string[] = [];
    const reopened = await Wal.open(dir, { preallocateBytes: 0, onRepair: (m) => repairs.push(m) });
    const seqs = new Set<number>();
    for (let lsn = 1; lsn <= reopened.lastLsn;) {
      const page = await reopened.read(lsn, { limit: 100 });
      for (const entry of page) seqs.add(seqOf(entry.value));
      lsn = page[page.length - 1].lsn + 1;
    }
    const lost = child.acked.filter((seq) => !seqs.has(seq));
    assert.deepEqual(lost, [], "every acknowledged append survives the failure and the reopen");
    assert.ok(repairs.length <= 1, `at most the torn tail is cut: ${repairs.join("; ")}`);
    const next = reopened.lastLsn + 1;
    assert.equal(
      await reopened.append(appendInput(999_999)),
      next,
      "with room again, appends go on",
    );
    await reopened.close();
  });
});
