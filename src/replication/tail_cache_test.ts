import assert from "node:assert/strict";
import { concatBytes } from "../common/bytes.ts";
import type { Entry } from "../common/entry.ts";
import { decodeBatchEntries } from "./frames.ts";
import { TailCache } from "./tail_cache.ts";

function entry(lsn: number): Entry {
  return {
    lsn,
    origin: "n1",
    seq: lsn,
    hlc: lsn,
    op: "put",
    key: `k${lsn}`,
    value: new Uint8Array(100),
    contentType: "",
    prevHlc: 0,
    prevOrigin: "",
  };
}

Deno.test("TailCache keeps the newest entries within its byte bound and serves reads from them", () => {
  const cache = new TailCache(10 * 470);
  for (let lsn = 1; lsn <= 50; lsn++) cache.onApply(entry(lsn));
  const first = cache.firstLsn!;
  assert.ok(first > 35 && first <= 41, `first ${first}`);
  assert.equal(cache.read(first - 1, 10, 1 << 20), undefined);
  assert.equal(cache.read(51, 10, 1 << 20), undefined);
  const read = cache.read(45, 3, 1 << 20)!;
  assert.deepEqual(read.map((f) => f.lsn), [45, 46, 47]);
  const frame = {
    v: 1,
    session: 1,
    startLsn: 45,
    fromLsn: 45,
    toLsn: 47,
    count: 3,
    records: concatBytes(read.map((f) => f.frame())),
  };
  assert.deepEqual(decodeBatchEntries(frame), [entry(45), entry(46), entry(47)]);
  // Reads hand out the held entries themselves: a leader re-reads its range on every pump while
  // it holds relays back, and a new object per entry per read was garbage each time. Each is
  // framed once, however often it is read.
  const again = cache.read(45, 3, 1 << 20)!;
  assert.ok(again.every((f, i) => f === read[i]), "the same objects on every read");
  assert.equal(again[0].frame(), read[0].frame());
  assert.deepEqual([again[0].origin, again[0].seq], ["n1", 45]);
  // The byte bound: at least one entry, and no more than fit (each counts 2 * (100 + 3) + 256).
  assert.deepEqual(cache.read(45, 10, 1)!.map((f) => f.lsn), [45]);
  assert.deepEqual(cache.read(45, 10, 2 * 462)!.map((f) => f.lsn), [45, 46]);
  assert.deepEqual(cache.read(45, 10, 2 * 462 - 1)!.map((f) => f.lsn), [45]);
  // A gap in LSNs (never expected) empties the cache rather than serving a hole.
  cache.onApply(entry(60));
  assert.equal(cache.firstLsn, 60);
});

Deno.test("TailCache lets go of what every stream acknowledged and keeps serving the rest", () => {
  const cache = new TailCache(1 << 20);
  for (let lsn = 1; lsn <= 20; lsn++) cache.onApply(entry(lsn));
  cache.releaseThrough(12);
  assert.equal(cache.firstLsn, 13);
  assert.equal(cache.read(12, 10, 1 << 20), undefined, "a rewind below the cache reads the WAL");
  assert.deepEqual(cache.read(13, 3, 1 << 20)!.map((f) => f.lsn), [13, 14, 15]);
  cache.releaseThrough(5); // behind what is already gone: nothing changes
  assert.equal(cache.firstLsn, 13);
  cache.releaseThrough(20);
  assert.equal(cache.firstLsn, undefined);
  assert.equal(cache.read(20, 10, 1 << 20), undefined);
  // Empty, it starts again at the next entry, whatever its LSN.
  cache.onApply(entry(21));
  assert.equal(cache.firstLsn, 21);
  assert.deepEqual(cache.read(21, 10, 1 << 20)!.map((f) => f.lsn), [21]);
});

Deno.test("TailCache.fromLsn is its oldest entry's LSN, or the next one's once it holds none", () => {
  const cache = new TailCache(1 << 20);
  assert.equal(cache.fromLsn, undefined);
  for (let lsn = 1; lsn <= 5; lsn++) cache.onApply(entry(lsn));
  assert.equal(cache.fromLsn, 1);
  cache.releaseThrough(3);
  assert.equal(cache.fromLsn, 4);
  cache.releaseThrough(5);
  assert.equal(cache.firstLsn, undefined);
  assert.equal(cache.fromLsn, 6);
  cache.clear();
  assert.equal(cache.fromLsn, undefined);
});
