import assert from "node:assert/strict";
import type { Entry } from "../../common/entry.ts";
import { Random } from "../../common/random.ts";
import { VALUE_SLAB_BYTES, VALUE_SLAB_TAKE_BYTES_MAX } from "../../common/limits.ts";
import { slabBytesHandedOut, takeValueBytes } from "../../common/value_slab.ts";
import { appliedBy, Keyspace, recordToEntry } from "./keyspace.ts";

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array | null | undefined) => b ? new TextDecoder().decode(b) : undefined;

function put(
  key: string,
  value: string,
  origin: string,
  seq: number,
  hlc: number,
  prev?: [number, string],
): Entry {
  return {
    lsn: 0,
    origin,
    seq,
    hlc,
    op: "put",
    key,
    value: bytes(value),
    contentType: "text/plain",
    prevHlc: prev?.[0] ?? 0,
    prevOrigin: prev?.[1] ?? "",
  };
}

function del(
  key: string,
  origin: string,
  seq: number,
  hlc: number,
  prev?: [number, string],
): Entry {
  return { ...put(key, "", origin, seq, hlc, prev), op: "delete", value: null, contentType: "" };
}

/** Writes to a view as origin n1, each write overwriting causally what its key held. */
class CausalWriter {
  seq = 0;
  hlc = 0;

  constructor(readonly ks: Keyspace, readonly hlcStep: () => number = () => 1) {}

  write(key: string, remove: boolean): void {
    this.seq++;
    this.hlc += this.hlcStep();
    const prev = this.ks.getVersion(key);
    const cause: [number, string] | undefined = prev ? [prev.hlc, prev.origin] : undefined;
    this.ks.apply(
      remove
        ? del(key, "n1", this.seq, this.hlc, cause)
        : put(key, `v${this.seq}`, "n1", this.seq, this.hlc, cause),
    );
  }
}

Deno.test("Keyspace: put, get, delete leaves a tombstone that reads as absent", () => {
  const ks = new Keyspace();
  ks.apply(put("a", "1", "n1", 1, 10));
  assert.equal(text(ks.get("a")?.value), "1");
  ks.apply(del("a", "n1", 2, 11, [10, "n1"]));
  assert.equal(ks.get("a"), undefined);
  assert.equal(ks.getVersion("a")?.value, null);
  assert.equal(ks.size, 0);
  assert.equal(ks.tombstones, 1);
  assert.deepEqual(ks.versionVector(), { n1: 2 });
});

Deno.test("Keyspace: a late, older write does not resurrect or overwrite", () => {
  const ks = new Keyspace();
  ks.apply(del("a", "n2", 1, 20));
  const late = ks.apply(put("a", "old", "n1", 1, 10));
  assert.equal(late.applied, false);
  assert.equal(ks.get("a"), undefined);
});

Deno.test("Keyspace: concurrent writes are detected; causal overwrites are not", () => {
  const ks = new Keyspace();
  ks.apply(put("k", "base", "n1", 1, 10));
  const causal = ks.apply(put("k", "next", "n2", 1, 20, [10, "n1"]));
  assert.deepEqual([causal.applied, causal.concurrent], [true, false]);
  // n3 wrote having seen only "base": concurrent with n2's write.
  const concurrent = ks.apply(put("k", "other", "n3", 1, 15, [10, "n1"]));
  assert.deepEqual([concurrent.applied, concurrent.concurrent], [false, true]);
  assert.equal(text(ks.get("k")?.value), "next");
});

Deno.test("Keyspace: the version vector advances only over gap-free sequences", () => {
  const ks = new Keyspace();
  ks.apply(put("a", "x", "n1", 1, 1));
  ks.apply(put("b", "x", "n1", 3, 3));
  assert.deepEqual(ks.versionVector(), { n1: 1 });
  assert.equal(ks.hasGaps(), true);
  assert.equal(ks.has("n1", 3), true);
  assert.equal(ks.has("n1", 2), false);
  ks.apply(put("c", "x", "n1", 2, 2));
  assert.deepEqual(ks.versionVector(), { n1: 3 });
  assert.equal(ks.hasGaps(), false);
});

Deno.test("Keyspace.aheadRanges() names the entries above gaps, and load() takes them back", () => {
  const ks = new Keyspace();
  for (const seq of [1, 4, 5, 6, 9]) ks.apply(put(`k${seq}`, "x", "n1", seq, seq));
  ks.apply(put("m", "x", "n2", 3, 10));
  assert.deepEqual(ks.aheadRanges(), { n1: [[4, 6], [9, 9]], n2: [[3, 3]] });
  const again = new Keyspace();
  // Ranges at or under the vector (an install raised it past them) are dropped.
  again.load([], { n1: 1, n2: 3 }, ks.aheadRanges());
  assert.deepEqual(again.versionVector(), { n1: 1, n2: 3 });
  assert.deepEqual(again.aheadRanges(), { n1: [[4, 6], [9, 9]] });
  again.apply(put("k2", "x", "n1", 2, 2));
  again.apply(put("k3", "x", "n1", 3, 3));
  assert.deepEqual(again.versionVector(), { n1: 6, n2: 3 });
  assert.equal(again.has("n1", 9), true);
});

Deno.test("appliedBy() names what a vector covers and what ranges above it hold", () => {
  const applied = appliedBy({ n1: 3 }, { n1: [[5, 6], [9, 9], [12, 20]], n2: [[2, 2]] });
  const held = (origin: string) =>
    Array.from({ length: 22 }, (_, i) => i + 1).filter((seq) => applied(origin, seq));
  assert.deepEqual(held("n1"), [1, 2, 3, 5, 6, 9, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
  assert.deepEqual(held("n2"), [2]);
  assert.deepEqual(held("n3"), []);
});

Deno.test("Keyspace: any arrival order of the same entries gives the same state (200 seeds)", () => {
  const entries: Entry[] = [];
  const origins = ["n1", "n2", "n3"];
  const base = new Random(7);
  const seqs: Record<string, number> = { n1: 0, n2: 0, n3: 0 };
  for (let i = 0; i < 60; i++) {
    const origin = base.pick(origins);
    const key = `k${base.int(5)}`;
    const seq = ++seqs[origin];
    entries.push(
      base.chance(0.2)
        ? del(key, origin, seq, 100 + base.int(50))
        : put(key, `${origin}-${seq}`, origin, seq, 100 + base.int(50)),
    );
  }
  const stateOf = (ks: Keyspace) =>
    JSON.stringify(
      [...ks.entries()].sort(([a], [b]) => a < b ? -1 : 1).map((
        [k, r],
      ) => [k, text(r.value), r.hlc, r.origin]),
    );
  const reference = new Keyspace();
  for (const e of entries) reference.apply(e);
  for (let seed = 1; seed <= 200; seed++) {
    const ks = new Keyspace();
    for (const e of new Random(seed).shuffle([...entries])) ks.apply(e);
    assert.equal(stateOf(ks), stateOf(reference), `seed ${seed}`);
    assert.deepEqual(ks.versionVector(), reference.versionVector(), `seed ${seed}`);
  }
});

Deno.test("Keyspace.scan() pages through a prefix in key order with a cursor", () => {
  const ks = new Keyspace();
  const keys = ["user:3", "user:1", "item:1", "user:2", "user:10", "users"];
  keys.forEach((k, i) => ks.apply(put(k, k, "n1", i + 1, i + 1)));
  ks.apply(del("user:2", "n1", 7, 7));
  const page1 = ks.scan({ prefix: "user:", limit: 2 }).map(([k]) => k);
  assert.deepEqual(page1, ["user:1", "user:10"]);
  const page2 = ks.scan({ prefix: "user:", after: "user:10", limit: 2 }).map(([k]) => k);
  assert.deepEqual(page2, ["user:3"]);
  assert.deepEqual(ks.scan({ limit: 100 }).map(([k]) => k), [
    "item:1",
    "user:1",
    "user:10",
    "user:3",
    "users",
  ]);
  ks.apply(put("user:0", "z", "n1", 8, 8));
  assert.deepEqual(ks.scan({ prefix: "user:", limit: 1 }).map(([k]) => k), ["user:0"]);
});

Deno.test("Keyspace.capture() copies every record, tombstones included, and later writes leave it as it was", () => {
  const ks = new Keyspace();
  for (let seq = 1; seq <= 5; seq++) {
    ks.apply({
      lsn: seq,
      origin: "n1",
      seq,
      hlc: seq,
      op: seq === 5 ? "delete" : "put",
      key: seq === 5 ? "k1" : `k${seq}`,
      value: seq === 5 ? null : new Uint8Array([seq]),
      contentType: "",
      prevHlc: 0,
      prevOrigin: "",
    });
  }
  const captured = ks.capture();
  assert.deepEqual(captured.keys, ["k1", "k2", "k3", "k4"]);
  assert.equal(captured.records[0].value, null, "k1's tombstone is captured");
  assert.deepEqual(captured.records.slice(1).map((r) => r.value![0]), [2, 3, 4]);
  ks.apply({
    lsn: 6,
    origin: "n1",
    seq: 6,
    hlc: 6,
    op: "put",
    key: "k9",
    value: new Uint8Array([9]),
    contentType: "",
    prevHlc: 0,
    prevOrigin: "",
  });
  assert.equal(captured.keys.length, 4);
  assert.deepEqual([...ks.entries()].map(([k]) => k), ["k1", "k2", "k3", "k4", "k9"]);
});

Deno.test("Keyspace: vectorChanges moves exactly when the version vector does", () => {
  const ks = new Keyspace();
  const seen = () => ({ changes: ks.vectorChanges, vv: JSON.stringify(ks.versionVector()) });
  let last = seen();
  const step = (apply: () => void, vectorMoves: boolean) => {
    apply();
    const now = seen();
    assert.equal(now.vv !== last.vv, vectorMoves, `vector ${last.vv} -> ${now.vv}`);
    assert.equal(now.changes !== last.changes, vectorMoves, "the count follows the vector");
    last = now;
  };
  step(() => ks.apply(put("a", "1", "n1", 1, 10)), true);
  step(() => ks.apply(put("a", "1", "n1", 1, 10)), false); // a duplicate
  step(() => ks.apply(put("b", "1", "n1", 3, 12)), false); // above a gap: not in the vector
  step(() => ks.apply(put("c", "1", "n1", 2, 11)), true); // fills the gap: 1..3
  step(() => ks.mergeVersionVector({ n1: 2 }), false);
  step(() => ks.mergeVersionVector({ n2: 5 }), true);
  step(() => ks.load([], { n1: 7 }), true);
});

/** A put whose value is the view `buffer[from, from + length)`, filled with `fill`. */
function sharedPut(
  key: string,
  buffer: Uint8Array,
  from: number,
  length: number,
  fill: number,
  seq: number,
): Entry {
  buffer.fill(fill, from, from + length);
  return { ...put(key, "", "n1", seq, seq), value: buffer.subarray(from, from + length) };
}

Deno.test("Keyspace keeps views into a shared buffer while they fill half of it, then copies the survivors out", () => {
  const ks = new Keyspace();
  const batch = new Uint8Array(440);
  for (let i = 0; i < 4; i++) ks.apply(sharedPut(`k${i}`, batch, i * 110, 100, i + 1, i + 1));
  // Judged once values come from another buffer: 400 of 440 bytes are live, so it is kept.
  const next = new Uint8Array(220);
  ks.apply(sharedPut("other", next, 0, 200, 9, 5));
  assert.equal(ks.get("k0")!.value!.buffer, batch.buffer, "kept where it arrived");
  assert.deepEqual(ks.sharedBuffers(), { buffers: 2, bytes: 660, liveBytes: 600 });

  // Overwriting two leaves 200 of 440 bytes: less than half, so k2 and k3 are copied out.
  const before = ks.getVersion("k2")!;
  ks.apply(put("k0", "new", "n1", 6, 6));
  assert.equal(ks.get("k2")!.value!.buffer, batch.buffer, "still half full");
  ks.apply(del("k1", "n1", 7, 7));
  for (const [key, fill] of [["k2", 3], ["k3", 4]] as const) {
    const value = ks.get(key)!.value!;
    assert.notEqual(value.buffer, batch.buffer, `${key} copied out`);
    assert.equal(value.byteLength, value.buffer.byteLength);
    assert.deepEqual(value, new Uint8Array(100).fill(fill));
  }
  assert.deepEqual(ks.sharedBuffers(), { buffers: 1, bytes: 220, liveBytes: 200 });
  // The record a snapshot may hold is left as it was; the view holds a new one.
  assert.equal(before.value!.buffer, batch.buffer);
  assert.notEqual(ks.getVersion("k2"), before);
  assert.deepEqual(
    { ...recordToEntry("k2", ks.getVersion("k2")!), value: null },
    { ...recordToEntry("k2", before), value: null },
  );
});

Deno.test("Keyspace: small values in a large shared buffer are copied out once the next buffer starts", () => {
  const ks = new Keyspace();
  const batch = new Uint8Array(1000);
  for (let i = 0; i < 5; i++) ks.apply(sharedPut(`k${i}`, batch, i * 200, 10, i + 1, i + 1));
  ks.apply(sharedPut("next", new Uint8Array(10), 0, 5, 7, 6));
  for (let i = 0; i < 5; i++) {
    assert.notEqual(ks.get(`k${i}`)!.value!.buffer, batch.buffer);
    assert.deepEqual(ks.get(`k${i}`)!.value, new Uint8Array(10).fill(i + 1));
  }
  assert.equal(ks.sharedBuffers().buffers, 1, "only the buffer being filled");
});

Deno.test("Keyspace: a slab of request bodies still being carved is judged by what was handed out of it", () => {
  const ks = new Keyspace();
  // Start a slab of its own and keep every slot handed out of it.
  const before = takeValueBytes(VALUE_SLAB_TAKE_BYTES_MAX).buffer;
  let first = takeValueBytes(VALUE_SLAB_TAKE_BYTES_MAX);
  while (first.buffer === before) first = takeValueBytes(VALUE_SLAB_TAKE_BYTES_MAX);
  const slab = first.buffer;
  let seq = 0;
  const apply = (key: string, value: Uint8Array, fill: number) => {
    value.fill(fill);
    ks.apply({ ...put(key, "", "n1", ++seq, seq), value });
  };
  apply("big", first, 1);
  for (let i = 0; i < 3; i++) apply(`k${i}`, takeValueBytes(100), i + 2);
  // A replication batch's value arrives: the slab is judged. 16,684 of 262,144 bytes are live
  // but all 16,684 handed out are, so nothing is copied.
  apply("remote", new Uint8Array(20).subarray(0, 10), 9);
  assert.equal(ks.get("k0")!.value!.buffer, slab, "kept in the slab being carved");
  assert.equal(slabBytesHandedOut(slab), VALUE_SLAB_TAKE_BYTES_MAX + 300);

  // Once the slab is finished it counts whole: the next overwrite in it copies the rest out.
  while (takeValueBytes(VALUE_SLAB_TAKE_BYTES_MAX).buffer === slab);
  assert.equal(slabBytesHandedOut(slab), VALUE_SLAB_BYTES);
  assert.equal(ks.get("k2")!.value!.buffer, slab);
  apply("k0", new Uint8Array(4), 7);
  for (const [key, fill] of [["big", 1], ["k1", 3], ["k2", 4]] as const) {
    const value = ks.get(key)!.value!;
    assert.notEqual(value.buffer, slab, `${key} copied out`);
    assert.ok(value.every((byte) => byte === fill), `${key} intact`);
  }
});

Deno.test("Keyspace: shared buffers stay at least half live and values stay intact (100 seeds)", () => {
  for (let seed = 1; seed <= 100; seed++) {
    const random = new Random(seed);
    const ks = new Keyspace();
    const expected = new Map<string, number[] | null>();
    let seq = 0;
    let lastBuffer = 0;
    let captured: { key: string; bytes: number[] | null }[] | undefined;
    let capture: ReturnType<Keyspace["capture"]> | undefined;
    for (let step = 0; step < 60; step++) {
      // A batch: values of 1-64 bytes packed into one buffer with 0-16 bytes between them.
      const sizes = Array.from({ length: 1 + random.int(8) }, () => 1 + random.int(64));
      const buffer = new Uint8Array(sizes.reduce((a, b) => a + b + 16, 0));
      let at = 0;
      for (const size of sizes) {
        at += random.int(17);
        const key = `k${random.int(12)}`;
        seq++;
        const kind = random.int(100);
        if (kind < 15) {
          ks.apply(del(key, "n1", seq, seq));
          expected.set(key, null);
        } else if (kind < 30) {
          ks.apply(put(key, "x".repeat(size), "n1", seq, seq));
          expected.set(key, Array(size).fill(120));
        } else {
          ks.apply(sharedPut(key, buffer, at, size, seq % 256, seq));
          expected.set(key, Array(size).fill(seq % 256));
          // The buffer the latest shared value came from is judged only once another starts.
          lastBuffer = buffer.byteLength;
        }
        at += size;
      }
      if (step === 30) {
        capture = ks.capture();
        captured = capture.keys.map((key, i) => ({
          key,
          bytes: capture!.records[i].value ? [...capture!.records[i].value!] : null,
        }));
      }
      const stats = ks.sharedBuffers();
      assert.ok(
        stats.liveBytes * 2 >= stats.bytes - lastBuffer,
        `seed ${seed} step ${step}: ${JSON.stringify(stats)}`,
      );
      for (const [key, bytes] of expected) {
        const value = ks.getVersion(key)!.value;
        assert.deepEqual(value ? [...value] : null, bytes, `seed ${seed} step ${step} ${key}`);
      }
    }
    capture!.keys.forEach((key, i) => {
      const value = capture!.records[i].value;
      assert.deepEqual({ key, bytes: value ? [...value] : null }, captured![i], `seed ${seed}`);
    });
  }
});

Deno.test("Keyspace.beginCapture() copies the view as of its start while writes go on between steps (100 seeds)", () => {
  for (let seed = 1; seed <= 100; seed++) {
    const random = new Random(seed);
    const ks = new Keyspace();
    const writer = new CausalWriter(ks, () => 1 + random.int(3));
    const write = () => writer.write(`k${random.int(40)}`, random.chance(0.2));
    for (let i = 0; i < 30; i++) write();
    const expected = ks.capture();
    const captures = [ks.beginCapture(), ks.beginCapture()];
    const steps = [1 + random.int(5), 1 + random.int(5)];
    let done = [false, false];
    while (!done.every(Boolean)) {
      for (let i = 0; i < 1 + random.int(4); i++) write();
      // Nothing is collected while a capture runs: every key of its moment must stay to be reached.
      assert.equal(ks.collectTombstones({ n1: writer.seq }, Number.MAX_SAFE_INTEGER), 0);
      done = done.map((d, i) => d || captures[i].step(steps[i]));
    }
    for (const capture of captures) {
      assert.equal(capture.size, expected.keys.length);
      const got = new Map(capture.keys.map((key, i) => [key, capture.records[i]]));
      const want = new Map(expected.keys.map((key, i) => [key, expected.records[i]]));
      assert.deepEqual(got, want, `seed ${seed}`);
      assert.equal(capture.step(10), true, "a whole capture stays whole");
    }
    // Once both are done, tombstones are collected again.
    const tombstones = ks.tombstones;
    assert.equal(ks.collectTombstones({ n1: writer.seq }, Number.MAX_SAFE_INTEGER), tombstones);
  }
});

Deno.test("Keyspace: a cancelled capture lets tombstones be collected and refuses more steps", () => {
  const ks = new Keyspace();
  ks.apply(put("a", "1", "n1", 1, 10));
  ks.apply(del("a", "n1", 2, 11, [10, "n1"]));
  const capture = ks.beginCapture();
  assert.equal(ks.collectTombstones({ n1: 2 }, 100), 0);
  capture.cancel();
  assert.throws(() => capture.step(1), /cancelled/);
  assert.equal(ks.collectTombstones({ n1: 2 }, 100), 1);
});

Deno.test("Keyspace.beginSortedRead() reads each key as of its start, in key order, while the view changes", () => {
  const ks = new Keyspace();
  ks.apply(put("b", "1", "n1", 1, 10));
  ks.apply(put("a", "1", "n1", 2, 11));
  ks.apply(del("c", "n1", 3, 12));
  const read = ks.beginSortedRead();
  assert.deepEqual([...read.keys], ["a", "b", "c"]);
  ks.apply(put("a", "2", "n1", 4, 13, [11, "n1"]));
  ks.apply(put("0", "new", "n1", 5, 14));
  // Collection goes on (tombstone c leaves the view); the read still sees it as it was.
  assert.equal(ks.collectTombstones({ n1: 5 }, 100), 1);
  assert.equal(ks.getVersion("c"), undefined);
  assert.equal(text(read.recordAt("a")?.value), "1");
  assert.equal(text(read.recordAt("b")?.value), "1");
  assert.equal(read.recordAt("c")?.value, null);
  assert.equal(read.recordAt("c")?.seq, 3);
  assert.deepEqual([...read.keys], ["a", "b", "c"], "the key list of the moment");
  read.close();
  assert.throws(() => read.recordAt("a"), /closing/);
});

Deno.test("Keyspace.sortKeysStep() rebuilds the key order in steps while writes, collections and scans go on (40 seeds)", () => {
  for (let seed = 1; seed <= 40; seed++) {
    const random = new Random(seed);
    const ks = new Keyspace();
    const writer = new CausalWriter(ks);
    const keyCount = 3_000 + random.int(6_000);
    const write = () => writer.write(`k/${random.int(keyCount).toString(36)}`, random.chance(0.3));
    // The scan a view must give: every live key in order, from the map itself.
    const expectedScan = (prefix: string, limit: number) => {
      const live: string[] = [];
      for (const [key, record] of ks.entries()) {
        if (record.value !== null && key.startsWith(prefix)) live.push(key);
      }
      return live.sort().slice(0, limit);
    };
    for (let round = 0; round < 6; round++) {
      const writes = random.int(8_000);
      for (let i = 0; i < writes; i++) write();
      if (random.chance(0.5)) ks.collectTombstones({ n1: writer.seq }, Number.MAX_SAFE_INTEGER);
      let steps = 0;
      while (!ks.sortKeysStep(1 + random.int(3_000))) {
        steps++;
        assert.ok(steps < 100_000, "sortKeysStep() ends");
        // Between steps: more writes, a collection, now and then a scan that takes over.
        for (let i = 0; i < random.int(30); i++) write();
        if (random.chance(0.05)) ks.collectTombstones({ n1: writer.seq }, Number.MAX_SAFE_INTEGER);
        if (random.chance(0.02)) {
          const prefix = `k/${random.int(36).toString(36)}`;
          assert.deepEqual(
            ks.scan({ prefix, limit: 50 }).map(([k]) => k),
            expectedScan(prefix, 50),
          );
        }
      }
      for (const prefix of ["", "k/1", "k/z"]) {
        assert.deepEqual(
          ks.scan({ prefix, limit: 100_000 }).map(([k]) => k),
          expectedScan(prefix, 100_000),
          `seed ${seed}, round ${round}, prefix "${prefix}"`,
        );
      }
    }
  }
});

Deno.test("Keyspace: a rebuild of the key order in steps is dropped by load() and restarts cleanly", () => {
  const ks = new Keyspace();
  for (let seq = 1; seq <= 5_000; seq++) ks.apply(put(`a${seq}`, "v", "n1", seq, seq));
  assert.equal(ks.sortKeysStep(100), false, "a rebuild is running");
  ks.load([["b", { ...put("b", "v", "n1", 1, 1), value: bytes("v"), lsn: 1 }]], { n1: 1 });
  assert.equal(ks.sortKeysStep(100), true, "nothing left to rebuild after load()");
  assert.deepEqual(ks.scan({ limit: 10 }).map(([k]) => k), ["b"]);
});

Deno.test("Keyspace.beginTombstoneSweep() collects in steps while writes go on, and removes nothing live (30 seeds)", () => {
  for (let seed = 1; seed <= 30; seed++) {
    const random = new Random(seed);
    const ks = new Keyspace();
    const writer = new CausalWriter(ks); // HLC = seq
    const write = (key: string, remove: boolean) => writer.write(key, remove);
    const keyCount = 500 + random.int(3_000);
    for (let i = 0; i < 3 * keyCount; i++) write(`k${random.int(keyCount)}`, random.chance(0.5));
    // Collectable: tombstones written up to now. Later ones are above belowHlc.
    const stable = { n1: writer.seq };
    const belowHlc = writer.seq + 1;
    const sweep = ks.beginTombstoneSweep(stable, belowHlc);
    let steps = 0;
    const deletedSince = new Set<string>();
    while (!sweep.step(1 + random.int(200))) {
      steps++;
      for (let i = 0; i < random.int(20); i++) {
        const key = `k${random.int(keyCount)}`;
        const remove = random.chance(0.5);
        write(key, remove);
        if (remove) deletedSince.add(key);
        else deletedSince.delete(key);
      }
    }
    for (const key of deletedSince) {
      assert.equal(ks.getVersion(key)?.value, null, `seed ${seed}: newer tombstone ${key} kept`);
    }
    assert.ok(steps > 0 || ks.tombstones === 0, `seed ${seed}: the sweep took steps`);
    for (const [key, record] of ks.entries()) {
      // Every tombstone still there was made after the sweep's bounds.
      if (record.value === null) assert.ok(record.hlc >= belowHlc, `seed ${seed}: ${key} left`);
    }
    assert.equal(sweep.step(10), true, "an ended sweep stays ended");
    const scanned = ks.scan({ limit: 100_000 }).length;
    assert.equal(scanned, ks.size, `seed ${seed}: the key order holds exactly the live keys`);
  }
});

Deno.test("Keyspace: a tombstone sweep stops when a capture walking the map starts, or load() replaces the state", () => {
  const ks = new Keyspace();
  for (let seq = 1; seq <= 100; seq++) ks.apply(del(`k${seq}`, "n1", seq, seq));
  const sweep = ks.beginTombstoneSweep({ n1: 100 }, 101);
  assert.equal(sweep.step(10), false);
  assert.equal(sweep.removed, 10);
  const capture = ks.beginCapture();
  assert.equal(sweep.step(10), true, "stopped: the capture must find every key of its moment");
  assert.equal(ks.tombstones, 90);
  capture.cancel();
  const again = ks.beginTombstoneSweep({ n1: 100 }, 101);
  assert.equal(again.step(10), false);
  ks.load([], { n1: 100 });
  assert.equal(again.step(10), true, "stopped: the state it began on is gone");
  assert.equal(again.removed, 10);
});

Deno.test("Keyspace.beginDropDeletedBy() removes live keys the vector covers and the snapshot lacks, and waits while a capture walks the map", () => {
  const ks = new Keyspace();
  ks.apply(put("gone", "1", "n1", 1, 10));
  ks.apply(put("kept", "2", "n1", 2, 20));
  ks.apply(put("newer", "3", "n1", 3, 30)); // not covered: the sender had not seen it
  ks.apply(put("dead", "4", "n2", 1, 40));
  ks.apply(del("dead", "n2", 2, 50)); // a tombstone stays: it changes no read
  ks.apply(put("above", "5", "n1", 5, 60)); // the sender held n1's 5 above a gap: covered
  const capture = ks.beginCapture();
  const pass = ks.beginDropDeletedBy(
    appliedBy({ n1: 2, n2: 2 }, { n1: [[5, 6]] }),
    new Set(["kept"]),
  );
  assert.equal(pass.step(Infinity), false, "a pass step ran while a capture walked the map");
  assert.equal(pass.removed, 0);
  assert.equal(text(ks.get("gone")?.value), "1");
  while (!capture.step(1)) { /* the capture walks on */ }
  assert.equal(capture.keys.length, 5, "the capture lost a key");
  assert.equal(pass.step(1), false);
  while (!pass.step(1)) { /* one key per step */ }
  assert.equal(pass.removed, 2);
  assert.equal(ks.get("gone"), undefined);
  assert.equal(ks.get("above"), undefined);
  assert.deepEqual([...ks.scan({ limit: 10 })].map(([key]) => key), ["kept", "newer"]);
  assert.equal(ks.size, 2);
  assert.equal(ks.tombstones, 1);
});
