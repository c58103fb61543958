import assert from "node:assert/strict";
import type { VersionVector } from "../common/entry.ts";
import { FOLLOWER_HOLES_MAX, FollowerStream } from "./follower.ts";

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

/** A follower's count of every origin's entries, when the test needs none. */
const HOLDS_NOTHING = () => 0;

/** A batch of `session` covering fromLsn..toLsn that is durable now, with what it held back. */
const durable = (session: number, toLsn: number, fromLsn = 1, held?: VersionVector) => ({
  session,
  fromLsn,
  toLsn,
  ...(held === undefined ? {} : { held }),
});

Deno.test("FollowerStream accepts batches only in order within the newest session", () => {
  const follower = new FollowerStream("n1", HOLDS_NOTHING);
  assert.equal(follower.onBatch(batch(5, 1, 1, 10)), "no session");
  assert.equal(follower.onOpen({ v: 1, session: 5, firstLsn: 1, lastLsn: 0 }), true);
  // A reordered second batch cannot pose as the first.
  assert.equal(follower.onBatch(batch(5, 1, 11, 20)), "out of order");
  assert.equal(follower.onBatch(batch(5, 1, 1, 10)), undefined);
  assert.equal(follower.onBatch(batch(5, 1, 1, 10)), "out of order"); // duplicate
  assert.equal(follower.onBatch(batch(5, 1, 12, 20)), "out of order"); // gap
  assert.equal(follower.onBatch(batch(4, 1, 11, 20)), "stale session");
  assert.equal(follower.onBatch(batch(5, 1, 11, 20)), undefined);
  follower.onDurable(durable(5, 20));
  assert.equal(follower.cursor, 20);
  assert.equal(follower.lag, 20); // the leader's last LSN rides on every batch
  assert.equal(follower.onOpen({ v: 1, session: 3, firstLsn: 1, lastLsn: 0 }), false);
  assert.equal(follower.onOpen({ v: 1, session: 6, firstLsn: 1, lastLsn: 0 }), true);
  assert.equal(follower.onBatch(batch(6, 21, 21, 30)), undefined);
  follower.onAppendFailed(6);
  assert.equal(follower.onBatch(batch(6, 21, 31, 40)), "out of order");
});

Deno.test("FollowerStream forgets its cursor when the leader comes back under a new origin", () => {
  const follower = new FollowerStream("n1", HOLDS_NOTHING);
  const open = (session: number, lastLsn: number, origin?: string) =>
    follower.onOpen({ v: 1, session, firstLsn: 1, lastLsn, origin });
  assert.equal(open(5, 20, "n1~00000001"), true);
  assert.equal(follower.onBatch(batch(5, 1, 1, 20)), undefined);
  follower.onDurable(durable(5, 20));
  assert.equal(follower.cursor, 20);
  // A restart keeps the origin, and the log: the cursor stands.
  assert.equal(open(6, 20, "n1~00000001"), true);
  assert.equal(follower.cursor, 20);
  // Restored from an older backup: LSNs 1..8 are a different log now.
  assert.equal(open(7, 8, "n1~00000002"), true);
  assert.equal(follower.cursor, 0);
  assert.equal(follower.lag, 8);
  // An append of the old log that completes late does not move the cursor.
  follower.onDurable(durable(6, 20));
  assert.equal(follower.cursor, 0);
  assert.equal(follower.onBatch(batch(7, 1, 1, 8)), undefined);
  follower.onDurable(durable(7, 8));
  assert.equal(follower.cursor, 8);
  // A leader that names no origin (an older version) changes nothing.
  assert.equal(open(8, 8), true);
  assert.equal(follower.cursor, 8);
});

Deno.test("FollowerStream keeps its cursor up to where a leader restarted under a new origin after a crash", () => {
  const follower = new FollowerStream("n1", HOLDS_NOTHING, { origin: "n1~00000001", cursor: 30 });
  const open = (session: number, origin: string, succeeds?: string, throughLsn = 0) =>
    follower.onOpen({
      v: 1,
      session,
      firstLsn: 1,
      lastLsn: 40,
      origin,
      ...(succeeds === undefined ? {} : { succeeds: { origin: succeeds, throughLsn } }),
    });
  // The leader kept LSNs 1..25 through its crash; 26.. may name other entries now.
  assert.equal(open(5, "n1~00000002", "n1~00000001", 25), true);
  assert.equal(follower.cursor, 25);
  // It kept more than this follower had: the cursor stands.
  const ahead = new FollowerStream("n1", HOLDS_NOTHING, { origin: "n1~00000001", cursor: 10 });
  ahead.onOpen({
    v: 1,
    session: 5,
    firstLsn: 1,
    lastLsn: 40,
    origin: "n1~00000002",
    succeeds: { origin: "n1~00000001", throughLsn: 25 },
  });
  assert.equal(ahead.cursor, 10);
  // A succession from an origin this follower never knew is any other new origin.
  assert.equal(open(6, "n1~00000004", "n1~00000003", 25), true);
  assert.equal(follower.cursor, 0);
});

Deno.test("FollowerStream resumes from a kept cursor unless the leader opens under another origin", () => {
  const kept = new FollowerStream("n1", HOLDS_NOTHING, { origin: "n1~00000001", cursor: 30 });
  assert.equal(kept.cursor, 30);
  assert.deepEqual(kept.resumePoint, { origin: "n1~00000001", cursor: 30 });
  assert.equal(
    kept.onOpen({ v: 1, session: 5, firstLsn: 20, lastLsn: 40, origin: "n1~00000001" }),
    true,
  );
  assert.equal(kept.cursor, 30);
  assert.equal(kept.lag, 10);
  const remade = new FollowerStream("n1", HOLDS_NOTHING, { origin: "n1~00000001", cursor: 30 });
  assert.equal(
    remade.onOpen({ v: 1, session: 5, firstLsn: 1, lastLsn: 9, origin: "n1~00000002" }),
    true,
  );
  assert.equal(remade.cursor, 0);
  assert.deepEqual(remade.resumePoint, { origin: "n1~00000002", cursor: 0 });
});

Deno.test("FollowerStream resumes before a range whose held-back relays it lacks, and acknowledges only what the session delivered", () => {
  const vv: VersionVector = {};
  const follower = new FollowerStream("n2", (origin) => vv[origin] ?? 0);
  assert.equal(follower.onOpen({ v: 1, session: 5, firstLsn: 1, lastLsn: 40 }), true);
  // 1..10 delivered; 11..20 held back n3's entries up to seq 4; 21..30 held back up to 9.
  assert.equal(follower.onBatch(batch(5, 1, 1, 10)), undefined);
  follower.onDurable(durable(5, 10));
  assert.equal(follower.onBatch(batch(5, 1, 11, 20)), undefined);
  follower.onDurable(durable(5, 20, 11, { n3: 4 }));
  assert.equal(follower.onBatch(batch(5, 1, 21, 30)), undefined);
  follower.onDurable(durable(5, 30, 21, { n3: 9 }));
  assert.equal(follower.cursor, 30);
  assert.equal(follower.holes, 2);
  assert.equal(follower.resumeCursor(), 10, "before the first range it lacks relays of");
  vv.n3 = 4; // n3's own stream delivered the first range's relays
  assert.equal(follower.resumeCursor(), 20);
  vv.n3 = 9;
  assert.equal(follower.resumeCursor(), 30);
  assert.equal(follower.holes, 0);
  assert.deepEqual(follower.resumePoint, { cursor: 30 });

  // A later session resumes lower (the leader restarted): status reports acknowledge what
  // it delivered, not the cursor, which covers a range it has not sent yet.
  assert.equal(follower.onOpen({ v: 1, session: 6, firstLsn: 1, lastLsn: 40 }), true);
  assert.equal(follower.statusCursor(), 30, "before its first batch: the resume cursor");
  assert.equal(follower.onBatch(batch(6, 11, 11, 15)), undefined);
  follower.onDurable(durable(6, 15, 11));
  assert.equal(follower.statusCursor(), 15);
  assert.equal(follower.cursor, 30);
});

Deno.test("FollowerStream keeps at most FOLLOWER_HOLES_MAX ranges, merged so it never resumes past a relay", () => {
  const vv: VersionVector = {};
  const follower = new FollowerStream("n2", (origin) => vv[origin] ?? 0);
  follower.onOpen({ v: 1, session: 5, firstLsn: 1, lastLsn: 10_000 });
  for (let i = 0; i < FOLLOWER_HOLES_MAX + 10; i++) {
    const from = 1 + i * 10;
    assert.equal(follower.onBatch(batch(5, 1, from, from + 9)), undefined);
    follower.onDurable(durable(5, from + 9, from, { [`n${3 + (i % 3)}`]: i + 1 }));
  }
  assert.equal(follower.holes, FOLLOWER_HOLES_MAX);
  assert.equal(follower.resumeCursor(), 0);
  // The ranges from the last kept one on merged into it (from LSN 631); lacking one relay of
  // theirs (n5's seq 72, held back in 711..720), the stream resumes before all of them.
  Object.assign(vv, { n3: 1_000, n4: 1_000, n5: 71 });
  assert.equal(follower.resumeCursor(), 630);
  vv.n5 = 72;
  assert.equal(follower.resumeCursor(), follower.cursor);
});
