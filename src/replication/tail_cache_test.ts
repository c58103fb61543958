import assert from "node:assert/strict";
import type { Entry } from "../common/entry.ts";
import { decodeBatchEntries } from "./frames.ts";
import { concatFrames, TailCache } from "./tail_cache.ts";

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
    records: concatFrames(read.map((f) => f.frame())),
  };
  assert.deepEqual(decodeBatchEntries(frame), [entry(45), entry(46), entry(47)]);
  // A gap in LSNs (never expected) empties the cache rather than serving a hole.
  cache.onApply(entry(60));
  assert.equal(cache.firstLsn, 60);
});
