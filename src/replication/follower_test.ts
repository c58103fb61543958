import assert from "node:assert/strict";
import { FollowerStream } from "./follower.ts";

const batch = (session: number, startLsn: number, fromLsn: number, toLsn: number) => ({
  v: 1,
  session,
  startLsn,
  fromLsn,
  toLsn,
  count: 0,
  records: new Uint8Array(),
  lastLsn: 40,
});

Deno.test("FollowerStream accepts batches only in order within the newest session", () => {
  const follower = new FollowerStream("n1");
  assert.equal(follower.onBatch(batch(5, 1, 1, 10)), "no session");
  assert.equal(follower.onOpen({ v: 1, session: 5, firstLsn: 1, lastLsn: 0 }), true);
  // A reordered second batch cannot pose as the first.
  assert.equal(follower.onBatch(batch(5, 1, 11, 20)), "out of order");
  assert.equal(follower.onBatch(batch(5, 1, 1, 10)), undefined);
  assert.equal(follower.onBatch(batch(5, 1, 1, 10)), "out of order"); // duplicate
  assert.equal(follower.onBatch(batch(5, 1, 12, 20)), "out of order"); // gap
  assert.equal(follower.onBatch(batch(4, 1, 11, 20)), "stale session");
  assert.equal(follower.onBatch(batch(5, 1, 11, 20)), undefined);
  follower.onDurable(20);
  assert.equal(follower.cursor, 20);
  assert.equal(follower.lag, 20); // the leader's last LSN rides on every batch
  assert.equal(follower.onOpen({ v: 1, session: 3, firstLsn: 1, lastLsn: 0 }), false);
  assert.equal(follower.onOpen({ v: 1, session: 6, firstLsn: 1, lastLsn: 0 }), true);
  assert.equal(follower.onBatch(batch(6, 21, 21, 30)), undefined);
  follower.onAppendFailed(6);
  assert.equal(follower.onBatch(batch(6, 21, 31, 40)), "out of order");
});
