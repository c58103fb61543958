import assert from "node:assert/strict";
import { LeaderStream, type LeaderWork } from "./leader.ts";
import { MSG_OPEN, type OpenedFrame } from "./frames.ts";

function stream(): LeaderStream {
  return new LeaderStream({
    peerId: "n2",
    sessionBase: 1000,
    batchEntriesMax: 10,
    batchBytesMax: 1 << 20,
    windowBytesMax: 1 << 20,
    windowBatchesMax: 8,
    creditEntries: 100,
    resendAfterMs: 500,
    snapshotChunksInflightMax: 2,
    relayGraceMs: 2_000,
    cursorOnlyEveryMs: 20,
  });
}

function only<K extends LeaderWork["kind"]>(
  work: LeaderWork[],
  kind: K,
): Extract<LeaderWork, { kind: K }> {
  assert.equal(work.length, 1, JSON.stringify(work));
  assert.equal(work[0].kind, kind);
  return work[0] as Extract<LeaderWork, { kind: K }>;
}

const opened = (session: number, cursor: number, credit = 100) => ({
  v: 1,
  session,
  cursor,
  vv: {},
  credit,
});
const ack = (session: number, ackedLsn: number, credit = 100) => ({
  v: 1,
  session,
  ackedLsn,
  vv: {},
  hlc: 1,
  credit,
});

/**
 * Takes `leader`'s peer down and up again and answers the new open with an opened frame at
 * cursor 0 carrying `fields`; returns what onOpened answered.
 */
function reopenWith(
  leader: LeaderStream,
  log: { firstLsn: number; lastLsn: number },
  fields: Partial<OpenedFrame>,
): boolean {
  leader.onPeerDown();
  leader.onPeerUp(0, log);
  leader.drain();
  return leader.onOpened({ ...opened(leader.session, 0), ...fields }, 0, log);
}

/** A stream to n2 that opened at time 0 with the follower at `cursor` and has a read out. */
function streaming(log: { firstLsn: number; lastLsn: number }, cursor = 0): LeaderStream {
  const leader = stream();
  leader.onPeerUp(0, log);
  leader.drain();
  leader.onOpened(opened(leader.session, cursor), 0, log);
  leader.poll(0, log);
  leader.drain();
  return leader;
}

Deno.test("LeaderStream opens, resumes from the follower's cursor, and pauses at zero credit", () => {
  const leader = stream();
  const log = { firstLsn: 1, lastLsn: 50 };
  leader.onPeerUp(0, log);
  const open = only(leader.drain(), "send");
  assert.equal(open.type, MSG_OPEN);
  const session = leader.session;
  assert.equal(leader.onOpened(opened(session, 20, 15), 1, log), true);
  leader.poll(1, log);
  const read = only(leader.drain(), "read");
  assert.equal(read.fromLsn, 21);
  assert.equal(read.entriesMax, 15); // one read may fill several batches, within the credit
  // Only one read at a time.
  leader.poll(1, log);
  assert.equal(leader.drain().length, 0);
  assert.deepEqual(leader.onRead(session, 21, 30, 10, 1000), {
    session,
    startLsn: 21,
    fromLsn: 21,
    toLsn: 30,
  });
  leader.poll(2, log);
  const second = only(leader.drain(), "read");
  assert.equal(second.entriesMax, 5); // credit 15, 10 in flight
  leader.onRead(session, 31, 35, 5, 500);
  assert.equal(leader.status, "paused");
  leader.poll(3, log);
  assert.equal(leader.drain().length, 0);
  assert.equal(leader.onAck(ack(session, 30), 4), 10);
  assert.equal(leader.matchLsn, 30);
  assert.equal(leader.status, "replicating");
});

Deno.test("LeaderStream times each batch of entries from its send to its ack", () => {
  const log = { firstLsn: 1, lastLsn: 50 };
  const leader = streaming(log);
  const session = leader.session;
  assert.deepEqual(leader.takeAckLatencies(), []);
  // One read split into four batches.
  assert.ok(leader.onRead(session, 1, 10, 10, 1000, true, 100));
  assert.ok(leader.onRead(session, 11, 20, 0, 0, true, 101)); // no entry: nothing to wait for
  assert.ok(leader.onRead(session, 21, 30, 10, 1000, true, 102.5));
  assert.ok(leader.onRead(session, 31, 35, 5, 500)); // no send time given: not timed
  // One ack may cover several batches: each is timed from its own send.
  leader.onAck(ack(session, 30), 104);
  assert.deepEqual(leader.takeAckLatencies(), [4, 1.5]);
  assert.deepEqual(leader.takeAckLatencies(), []);
  // A refused ack (stale session) times nothing.
  leader.onAck(ack(session - 1, 35), 110);
  assert.deepEqual(leader.takeAckLatencies(), []);
  leader.onAck(ack(session, 35), 111);
  assert.deepEqual(leader.takeAckLatencies(), []);
});

Deno.test("LeaderStream refuses stale, behind and ahead acks, and reopens a stalled stream", () => {
  const log = { firstLsn: 1, lastLsn: 50 };
  const leader = streaming(log);
  const session = leader.session;
  leader.onRead(session, 1, 10, 10, 100);
  assert.equal(leader.onAck(ack(session - 1, 5), 1), undefined);
  assert.equal(leader.onAck(ack(session, 11), 1), undefined);
  assert.equal(leader.onAck(ack(session, 5), 1), 5);
  assert.equal(leader.onAck(ack(session, 4), 1), undefined);
  leader.tick(400, log);
  assert.equal(leader.drain().length, 0);
  leader.tick(501, log);
  const reopen = only(leader.drain(), "send");
  assert.equal(reopen.type, MSG_OPEN);
  assert.ok(leader.session > session);
  // The new session resumes after what was acknowledged.
  leader.onOpened(opened(leader.session, 0), 502, log);
  leader.poll(502, log);
  assert.equal(only(leader.drain(), "read").fromLsn, 6);
});

Deno.test("LeaderStream ships a snapshot when retention removed the follower's point, then the tail", () => {
  const leader = stream();
  const log = { firstLsn: 40, lastLsn: 50 };
  leader.onPeerUp(0, log);
  leader.drain();
  const session = leader.session;
  leader.onOpened(opened(session, 10), 0, log);
  assert.equal(only(leader.drain(), "snapshot").session, session);
  assert.equal(leader.status, "snapshot");
  leader.onSnapshotReady(session, 50, 3);
  leader.poll(1, log);
  const chunks = leader.drain();
  assert.deepEqual(chunks.map((w) => w.kind === "sendChunk" && w.index), [0, 1]);
  assert.equal(leader.onSnapAck({ v: 1, session, index: 1 }, 2), true);
  assert.equal(leader.onSnapAck({ v: 1, session, index: 1 }, 2), false);
  leader.poll(2, log);
  assert.deepEqual(leader.drain().map((w) => w.kind === "sendChunk" && w.index), [2]);
  leader.onSnapAck({ v: 1, session, index: 2 }, 3);
  assert.equal(only(leader.drain(), "snapshotDone").session, session);
  assert.equal(leader.matchLsn, 50);
  assert.equal(leader.status, "replicating");
  leader.poll(3, { firstLsn: 40, lastLsn: 55 });
  assert.equal(only(leader.drain(), "read").fromLsn, 51);
});

Deno.test("LeaderStream streams from the first retained entry, not a snapshot, to a follower that holds all the log counts", () => {
  const log = { firstLsn: 40, lastLsn: 50 };
  const coverage = { versionVector: { n1: 30, n2: 20 }, vectorLsn: 50 };
  const open = (vv: Record<string, number>, cov = coverage) => {
    const leader = stream();
    leader.onPeerUp(0, log);
    leader.drain();
    // Both sides restarted: no cursor on the follower, no acknowledged point on the leader.
    assert.equal(leader.onOpened({ ...opened(leader.session, 0), vv }, 1, log, {}, cov), true);
    return leader;
  };
  const holding = open({ n1: 30, n2: 25, n3: 7 });
  assert.equal(holding.status, "replicating");
  holding.poll(1, log);
  assert.equal(only(holding.drain(), "read").fromLsn, 40);
  // One entry short of the vector, or a log with a gap (nothing counted): the snapshot.
  only(open({ n1: 30, n2: 19 }).drain(), "snapshot");
  only(open({ n1: 30, n2: 20 }, { ...coverage, vectorLsn: 0 }).drain(), "snapshot");
});

Deno.test("LeaderStream drops a read that no longer fits after the follower lowered its credit", () => {
  const leader = stream();
  const log = { firstLsn: 1, lastLsn: 50 };
  leader.onPeerUp(0, log);
  leader.drain();
  const session = leader.session;
  leader.onOpened(opened(session, 0, 30), 0, log);
  leader.poll(0, log);
  only(leader.drain(), "read");
  leader.onRead(session, 1, 10, 10, 100);
  leader.poll(0, log);
  assert.equal(only(leader.drain(), "read").entriesMax, 20);
  // An ack frees the first batch but grants only 5 entries while the second read runs.
  leader.onAck(ack(session, 10, 5), 1);
  assert.equal(leader.onRead(session, 11, 20, 10, 100), undefined);
  assert.equal(leader.window.inflightEntries, 0);
  leader.poll(2, log);
  const again = only(leader.drain(), "read");
  assert.equal(again.fromLsn, 11);
  assert.equal(again.entriesMax, 5);
});

Deno.test("LeaderStream ships a snapshot when the follower lacks entries held only through one, else streams", () => {
  const log = { firstLsn: 1, lastLsn: 10 };
  const snapshotOnly = { n1: 40 };
  // The log starts at 1, but the follower lacks n1's entries, which the log never had.
  const lacking = stream();
  lacking.onPeerUp(0, log);
  lacking.drain();
  const frame = { ...opened(lacking.session, 10), vv: { n1: 12, n3: 4 } };
  assert.equal(lacking.lacksAny(snapshotOnly), true); // nothing reported yet: lacks all
  assert.equal(lacking.onOpened(frame, 1, log, snapshotOnly), true);
  assert.equal(lacking.status, "snapshot");
  assert.equal(only(lacking.drain(), "snapshot").session, lacking.session);
  // A follower that holds them resumes from its cursor as usual.
  const holding = stream();
  holding.onPeerUp(0, log);
  holding.drain();
  const full = { ...opened(holding.session, 4), vv: { n1: 40, n3: 4 } };
  assert.equal(holding.onOpened(full, 1, log, snapshotOnly), true);
  assert.equal(holding.status, "replicating");
  holding.poll(1, log);
  assert.equal(only(holding.drain(), "read").fromLsn, 5);
  // reopen() starts a new session so the follower reports afresh.
  const before = holding.session;
  holding.reopen(2, log);
  assert.equal(holding.status, "opening");
  assert.ok(holding.session > before);
  assert.equal(only(holding.drain(), "send").type, MSG_OPEN);
});

Deno.test("LeaderStream forgets held-back relays the follower reports, and rewinds to ship the rest after the grace", () => {
  const log = { firstLsn: 1, lastLsn: 30 };
  const leader = streaming(log); // relayGraceMs 2,000
  let session = leader.session;
  // LSNs 1..10 went out; n3's entries 1..4 at LSNs 3..6 and n4's 1..2 at LSNs 8..9 held back.
  leader.onRead(session, 1, 10, 4, 400);
  assert.equal(leader.mayDefer("n3"), true);
  assert.equal(leader.mayDefer("n2"), true, "the follower's own entries are held back too");
  for (const [seq, lsn] of [[1, 3], [2, 4], [3, 5], [4, 6]]) leader.onDeferred("n3", seq, lsn, 10);
  leader.onDeferred("n4", 1, 8, 10);
  leader.onDeferred("n4", 2, 9, 10);
  assert.deepEqual(leader.deferredOrigins, ["n3", "n4"]);
  // The follower got n3's entries from n3 itself: its vector says so in an ack.
  assert.equal(leader.onAck({ ...ack(session, 10), vv: { n3: 4, n4: 1 } }, 100), 10);
  assert.deepEqual(leader.deferredOrigins, ["n4"], "n4's seq 2 is still missing");
  // The grace counts from the last time n4's entries reached the follower (its vector rose
  // for n4 at 100): within it nothing happens; past it the stream reopens...
  leader.tick(2_099, log);
  assert.equal(leader.drain().length, 0);
  leader.tick(2_100, log);
  assert.equal(only(leader.drain(), "send").type, MSG_OPEN);
  assert.deepEqual(leader.deferredOrigins, []);
  assert.equal(leader.mayDefer("n4"), false, "n4 is relayed again until the follower holds it");
  /** Answers the reopen with the follower at `cursor`; returns where the new session reads. */
  const reopenedFrom = (nowMs: number, cursor: number): number => {
    session = leader.session;
    leader.onOpened(opened(session, cursor), nowMs, log);
    leader.poll(nowMs, log);
    const from = only(leader.drain(), "read").fromLsn;
    leader.onRead(session, from, 30, 3, 300);
    return from;
  };
  // ...and resends from the first held-back LSN, although the follower's cursor is past it.
  assert.equal(reopenedFrom(2_101, 10), 8);
  // A status ack at the follower's cursor does not count as delivery: only the vector does.
  leader.onAck({ ...ack(session, 10), vv: { n3: 4, n4: 1 } }, 2_190);
  assert.equal(leader.mayDefer("n4"), false);
  // Not delivered within the grace (a frame lost): rewind again, from the same point.
  leader.tick(4_100, log);
  assert.equal(only(leader.drain(), "send").type, MSG_OPEN);
  assert.equal(reopenedFrom(4_101, 30), 8);
  leader.onAck({ ...ack(session, 30), vv: { n3: 4, n4: 2 } }, 4_190);
  assert.equal(leader.mayDefer("n4"), true, "delivered: n4 may be held back again");
  leader.tick(10_000, log);
  assert.equal(leader.drain().length, 0, "nothing left to rewind for");
});

Deno.test("LeaderStream keeps holding back relays while their origin's entries keep reaching the follower", () => {
  // A catch-up: the follower gets n3's entries from n3 at its own pace, slower than the grace.
  // Each time its vector rises for n3 the wait starts over; a rewind would throw away this
  // stream's batches in flight and ship n3's entries a second time.
  const log = { firstLsn: 1, lastLsn: 10_000 };
  const leader = streaming(log); // relayGraceMs 2,000; a read from LSN 1 is out
  const session = leader.session;
  leader.onRead(session, 1, 100, 50, 5_000);
  for (let seq = 1; seq <= 50; seq++) leader.onDeferred("n3", seq, 2 * seq, 10);
  let acked = 100;
  for (let t = 400, held = 5; t <= 8_000; t += 400, held += 1) {
    // The last batch acked with one more of n3's entries delivered, and the next one read.
    leader.onAck({ ...ack(session, acked), vv: { n3: held } }, t);
    leader.poll(t, log);
    const read = only(leader.drain(), "read");
    assert.equal(read.fromLsn, acked + 1);
    leader.onRead(session, acked + 1, acked + 100, 100, 10_000);
    acked += 100;
    leader.tick(t + 399, log);
    assert.deepEqual(leader.drain(), [], `no rewind at ${t + 399}`);
  }
  assert.deepEqual(leader.deferredOrigins, ["n3"]);
  // n3's entries stop arriving (n3 died, say): the grace runs out and this stream ships them.
  leader.onAck({ ...ack(session, acked), vv: { n3: 25 } }, 8_400);
  leader.tick(10_399, log);
  assert.deepEqual(leader.drain(), []);
  leader.tick(10_400, log);
  assert.equal(only(leader.drain(), "send").type, MSG_OPEN);
  assert.equal(leader.mayDefer("n3"), false);
});

Deno.test("LeaderStream ships the follower's own held-back entries back after the grace when its vector lacks them", () => {
  // The follower (n2) lost its own writes 1..3 (restored from an older backup, say): this node
  // held them back as ones n2 wrote, and n2's vector never reports them.
  const log = { firstLsn: 1, lastLsn: 20 };
  const leader = streaming(log);
  const session = leader.session;
  leader.onRead(session, 1, 10, 0, 0);
  for (const [seq, lsn] of [[1, 4], [2, 5], [3, 6]]) leader.onDeferred("n2", seq, lsn, 10);
  leader.onAck({ ...ack(session, 10), vv: { n2: 0 } }, 100);
  assert.deepEqual(leader.deferredOrigins, ["n2"]);
  leader.tick(2_010, log);
  assert.equal(only(leader.drain(), "send").type, MSG_OPEN);
  assert.equal(leader.mayDefer("n2"), false, "n2's own entries are relayed to it now");
  leader.onOpened(opened(leader.session, 10), 2_011, log);
  leader.poll(2_011, log);
  assert.equal(only(leader.drain(), "read").fromLsn, 4, "from the first held-back LSN");
});

Deno.test("LeaderStream sends cursor-only batches at most once per cursorOnlyEveryMs; an own entry releases the wait", () => {
  const log = { firstLsn: 1, lastLsn: 30 };
  const leader = streaming(log); // a read from LSN 1 is out; cursorOnlyEveryMs 20
  const session = leader.session;
  // LSNs 1..10 held nothing the follower lacks: the first such batch goes.
  assert.equal(leader.mayShipCursorOnly(session, 5), true);
  assert.ok(leader.onRead(session, 1, 10, 0, 0));
  leader.poll(6, log);
  assert.equal(only(leader.drain(), "read").fromLsn, 11);
  // The next one within 20 ms does not: the read is dropped and no other is issued meanwhile.
  assert.equal(leader.mayShipCursorOnly(session, 6), false);
  leader.poll(24, log);
  assert.deepEqual(leader.drain(), [], "held until 20 ms after the last cursor-only batch");
  leader.poll(25, log);
  assert.equal(only(leader.drain(), "read").fromLsn, 11, "the same range, read again");
  assert.equal(leader.mayShipCursorOnly(session, 25), true);
  assert.ok(leader.onRead(session, 11, 20, 0, 0));
  leader.poll(26, log);
  assert.equal(only(leader.drain(), "read").fromLsn, 21);
  assert.equal(leader.mayShipCursorOnly(session, 26), false);
  // This node appended its own entry: the follower needs it now, not after the interval.
  leader.releaseCursorOnly();
  leader.poll(27, log);
  assert.equal(only(leader.drain(), "read").fromLsn, 21);
});

Deno.test("LeaderStream forgets what a follower held once it comes back under a new origin", () => {
  const log = { firstLsn: 1, lastLsn: 50 };
  const leader = stream();
  const reopen = (origin: string, cursor: number, vv: Record<string, number>) => {
    assert.equal(reopenWith(leader, log, { origin, cursor, vv }), true);
    leader.poll(0, log);
    return only(leader.drain(), "read").fromLsn;
  };
  assert.equal(reopen("n2~00000001", 0, {}), 1);
  leader.onRead(leader.session, 1, 10, 10, 100);
  assert.equal(leader.onAck({ ...ack(leader.session, 10), vv: { "n1~0000000a": 10 } }, 1), 10);
  // A restart under the same origin resumes after what it acknowledged, whatever it reports.
  assert.equal(reopen("n2~00000001", 0, {}), 11);
  assert.equal(leader.followerVv["n1~0000000a"], 10);
  // Restored from a backup taken at LSN 4: resume from its report, count copies from it.
  assert.equal(reopen("n2~00000002", 0, { "n1~0000000a": 4 }), 1);
  assert.equal(leader.matchLsn, 0);
  assert.deepEqual(leader.followerVv, { "n1~0000000a": 4 });
});

Deno.test("LeaderStream keeps what a follower acknowledged when it comes back under a new origin after a crash", () => {
  const log = { firstLsn: 1, lastLsn: 50 };
  const leader = stream();
  const reopen = (origin: string, succeeds?: string) => {
    const fields = succeeds === undefined ? {} : { succeeds: { origin: succeeds, throughLsn: 3 } };
    // It reports holding all it acknowledged (else it gets a snapshot: see below).
    const vv = { ...leader.followerVv };
    assert.equal(reopenWith(leader, log, { origin, vv, ...fields }), true);
    leader.poll(0, log);
    return only(leader.drain(), "read").fromLsn;
  };
  assert.equal(reopen("n2~00000001"), 1);
  leader.onRead(leader.session, 1, 10, 10, 100);
  assert.equal(leader.onAck({ ...ack(leader.session, 10), vv: { "n1~0000000a": 10 } }, 1), 10);
  // Its acks followed its fdatasync: a crash kept all of it, whatever origin it writes under.
  assert.equal(reopen("n2~00000002", "n2~00000001"), 11);
  assert.equal(leader.matchLsn, 10);
  assert.equal(leader.followerVv["n1~0000000a"], 10);
  // Succeeding an origin it never had here counts as any new origin.
  assert.equal(reopen("n2~00000004", "n2~00000003"), 1);
  assert.equal(leader.matchLsn, 0);
});

Deno.test("LeaderStream names the origins a follower back from a crash reports less of than before", () => {
  const log = { firstLsn: 1, lastLsn: 50 };
  const leader = stream();
  const reopen = (origin: string, vv: Record<string, number>, succeeds?: string) => {
    const fields = succeeds === undefined ? {} : { succeeds: { origin: succeeds, throughLsn: 3 } };
    assert.equal(reopenWith(leader, log, { origin, vv, ...fields }), true);
    return leader.takeVectorRegressions();
  };
  assert.deepEqual(reopen("n2~00000001", { a: 5, b: 7 }), []);
  assert.deepEqual(reopen("n2~00000001", { a: 6, b: 7 }), [], "a report that only grows");
  // Back after a crash under a succeeding origin, holding less than it had reported.
  assert.deepEqual(reopen("n2~00000002", { a: 6, b: 4 }, "n2~00000001"), [
    { origin: "b", reported: 7, holds: 4 },
  ]);
  assert.deepEqual(leader.takeVectorRegressions(), [], "each is named once");
  assert.deepEqual(reopen("n2~00000003", { a: 6, b: 7 }, "n2~00000002"), [], "all it reported");
  // Restored or remade: what it held before no longer counts, so nothing went back.
  assert.deepEqual(reopen("n2~00000009", { a: 1 }), []);
});

Deno.test("LeaderStream answers a follower that came back holding less than it reported with a snapshot", () => {
  const log = { firstLsn: 1, lastLsn: 50 };
  const leader = stream();
  const reopen = (run: string, vv: Record<string, number>, cursor: number) => {
    assert.equal(
      reopenWith(leader, log, { origin: "n2~00000001", vv, run, cursor }),
      true,
    );
    leader.poll(0, log);
    return leader.drain();
  };
  assert.equal(only(reopen("run-a", { a: 5, b: 7 }, 30), "read").fromLsn, 31);
  // Back holding less of b than it reported, with a cursor that says nothing of where b's
  // missing entries sit in this log: resuming at 31 would never send them.
  assert.equal(only(reopen("run-b", { a: 5, b: 4 }, 30), "snapshot").kind, "snapshot");
  assert.equal(leader.status, "snapshot");
  assert.deepEqual(leader.followerVv, { a: 5, b: 4 }, "what it holds now counts");
  assert.equal(leader.lacksAny({ b: 5 }), true);
  // A transfer cut short (a link flap, another crash) leaves it as short as before, while its
  // reports no longer say less than this stream counts: every open sends one until one lands.
  assert.equal(only(reopen("run-b", { a: 5, b: 4 }, 30), "snapshot").kind, "snapshot");
  assert.equal(only(reopen("run-c", { a: 5, b: 4 }, 30), "snapshot").kind, "snapshot");
  const session = leader.session;
  leader.onSnapshotReady(session, 50, 1);
  leader.poll(0, log);
  assert.equal(only(leader.drain(), "sendChunk").index, 0);
  assert.equal(leader.onSnapAck({ v: 1, session, index: 0 }, 0), true);
  assert.equal(only(leader.drain(), "snapshotDone").kind, "snapshotDone");
  // Installed: a restart that holds all it reported resumes from the log as before (at the
  // snapshot's LSN + 1, past this log's end: nothing to read).
  assert.deepEqual(reopen("run-d", { a: 5, b: 7 }, 50), []);
  assert.equal(leader.status, "replicating");
});

Deno.test("LeaderStream names what a follower restarted under the same origin reports less of, and nothing within one run", () => {
  const log = { firstLsn: 1, lastLsn: 50 };
  const leader = stream();
  const reopen = (run: string, vv: Record<string, number>) => {
    assert.equal(reopenWith(leader, log, { origin: "n2~00000001", vv, run }), true);
    return leader.takeVectorRegressions();
  };
  assert.deepEqual(reopen("run-a", { a: 5 }), []);
  // The same process: an opened frame that seems to say less (a reordered report in a
  // simulation) is no restart.
  assert.deepEqual(reopen("run-a", { a: 3 }), []);
  // A clean restart keeps the origin; it must still hold all it reported.
  assert.deepEqual(reopen("run-b", { a: 4 }), [{ origin: "a", reported: 5, holds: 4 }]);
  assert.deepEqual(reopen("run-c", { a: 5 }), []);
});
