import assert from "node:assert/strict";
import type { Entry } from "../common/entry.ts";
import { ProtocolError } from "../common/errors.ts";
import {
  AHEAD_ENTRIES_MAX,
  MEMBERS_MAX,
  ORIGIN_BYTES_MAX,
  REPL_SNAP_AHEAD_RANGES_MAX,
} from "../common/limits.ts";
import {
  decodeBatchEntries,
  decodeSnapRecords,
  encodeBatchRecords,
  encodeSnapRecords,
  parseAck,
  parseBatch,
  parseOpen,
  parseOpened,
  parseReadOk,
  parseSnap,
  REPL_PROTOCOL_VERSION,
  RUN_ID_BYTES_MAX,
} from "./frames.ts";
import { batchBody } from "../../tests/support/repl_frames.ts";

function entry(lsn: number, seq: number): Entry {
  return {
    lsn,
    origin: "n1",
    seq,
    hlc: 1000 + seq,
    op: "put",
    key: `k${seq}`,
    value: new Uint8Array([seq]),
    contentType: "application/octet-stream",
    prevHlc: 0,
    prevOrigin: "",
  };
}

/** A batch body of range 3..6 and count 2 (as for `good`) carrying `records`, with `fields` over it. */
function batchOfTwo<F extends object>(records: Uint8Array, fields?: F) {
  return batchBody({ fromLsn: 3, toLsn: 6, count: 2, records, ...fields });
}

Deno.test("batch frames round-trip their entries", () => {
  const entries = [entry(3, 1), entry(5, 2)];
  const frame = parseBatch(batchOfTwo(encodeBatchRecords(entries)));
  assert.deepEqual(decodeBatchEntries(frame), entries);
  assert.equal(frame.held, undefined);
  const held = parseBatch(batchOfTwo(encodeBatchRecords(entries), { held: { "n3~0000abcd": 7 } }));
  assert.deepEqual(held.held, { "n3~0000abcd": 7 });
});

Deno.test("a batch's values are views into its records, not copies (the key-value view accounts for them)", () => {
  const records = encodeBatchRecords([entry(3, 1), entry(5, 2)]);
  const decoded = decodeBatchEntries(parseBatch(batchOfTwo(records)));
  for (const { value } of decoded) assert.equal(value!.buffer, records.buffer);
  assert.deepEqual(decoded.map((e) => [...e.value!]), [[1], [2]]);
});

Deno.test("malformed frames are refused with ProtocolError", () => {
  const good = encodeBatchRecords([entry(3, 1), entry(5, 2)]);
  const flipped = good.slice();
  flipped[20] ^= 0xff;
  const batchCases: unknown[] = [
    null,
    [],
    "batch",
    batchOfTwo(good, { v: 2 }),
    batchOfTwo(good, { session: -1 }),
    batchOfTwo(good, { fromLsn: 7, count: 0, records: new Uint8Array() }),
    batchOfTwo(good, { count: 9 }),
    batchOfTwo(good, { records: "bytes" }),
    batchOfTwo(good, { session: 1.5 }),
    batchOfTwo(good, { held: [3] }),
    batchOfTwo(good, { held: { n3: -1 } }),
    batchOfTwo(good, { held: { n3: "9" } }),
    batchOfTwo(good, { held: { ["n".repeat(ORIGIN_BYTES_MAX + 1)]: 1 } }),
  ];
  for (const body of batchCases) {
    assert.throws(() => parseBatch(body), ProtocolError, JSON.stringify(body));
  }
  const entryCases = [
    { records: flipped, count: 2, fromLsn: 3, toLsn: 6 }, // CRC mismatch
    { records: good.subarray(0, good.length - 1), count: 2, fromLsn: 3, toLsn: 6 }, // torn
    { records: good, count: 1, fromLsn: 3, toLsn: 6 }, // count disagrees
    { records: good, count: 2, fromLsn: 4, toLsn: 6 }, // LSN below the range
    { records: good, count: 2, fromLsn: 3, toLsn: 4 }, // LSN above the range
    { records: encodeBatchRecords([entry(5, 2), entry(3, 1)]), count: 2, fromLsn: 3, toLsn: 6 }, // out of order
  ];
  for (const c of entryCases) {
    assert.throws(() => decodeBatchEntries(batchBody(c)), ProtocolError, JSON.stringify(c.fromLsn));
  }
  // Every prefix of a good batch is refused, never half-decoded.
  for (let cut = 1; cut < good.length; cut++) {
    assert.throws(() => decodeBatchEntries(batchOfTwo(good.subarray(0, cut))), ProtocolError);
  }
  assert.throws(() => parseOpen({ v: 1, session: 1, firstLsn: "1", lastLsn: 0 }), ProtocolError);
  assert.throws(
    () => parseOpened({ v: 1, session: 1, cursor: 0, vv: { "": 1 }, credit: 1 }),
    ProtocolError,
  );
  assert.throws(
    () => parseOpened({ v: 1, session: 1, cursor: 0, vv: [], credit: 1 }),
    ProtocolError,
  );
  assert.throws(
    () => parseAck({ v: 1, session: 1, ackedLsn: 0, vv: {}, hlc: 0, credit: 1e9 }),
    ProtocolError,
  );
  assert.throws(
    () => decodeSnapRecords(new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0, 0])),
    ProtocolError,
  );
});

Deno.test("snapshot chunks round-trip records, tombstones included", () => {
  const records: [string, import("../storage/kv/keyspace.ts").KeyRecord][] = [
    ["a", {
      value: new Uint8Array([1]),
      contentType: "x",
      hlc: 5,
      origin: "n1",
      seq: 1,
      lsn: 0,
      prevHlc: 0,
      prevOrigin: "",
    }],
    ["b", {
      value: null,
      contentType: "",
      hlc: 6,
      origin: "n2",
      seq: 4,
      lsn: 0,
      prevHlc: 2,
      prevOrigin: "n1",
    }],
  ];
  assert.deepEqual(decodeSnapRecords(encodeSnapRecords(records)), records);
  // An origin over ORIGIN_BYTES_MAX is refused like any malformed field.
  const long: typeof records = [["a", { ...records[0][1], origin: "n".repeat(74) }]];
  assert.throws(() => decodeSnapRecords(encodeSnapRecords(long)), ProtocolError);
});

Deno.test("open frames carry the sender's origin, checked like every field", () => {
  const open = { v: 1, session: 3, firstLsn: 1, lastLsn: 9 };
  assert.equal(parseOpen(open).origin, undefined);
  assert.equal(parseOpen({ ...open, origin: "n1~0a1b2c3d" }).origin, "n1~0a1b2c3d");
  const opened = { v: 1, session: 3, cursor: 0, vv: {}, credit: 10 };
  assert.equal(parseOpened({ ...opened, origin: "n2" }).origin, "n2");
  for (const origin of [7, "", "n1~", "n1~0A1B2C3D", "x".repeat(65)]) {
    assert.throws(() => parseOpen({ ...open, origin }), ProtocolError, String(origin));
    assert.throws(() => parseOpened({ ...opened, origin }), ProtocolError, String(origin));
  }
});

Deno.test("opened and ack frames carry the follower's sources, a bounded list of node ids", () => {
  const ack = { v: 1, session: 1, ackedLsn: 0, vv: {}, hlc: 0, credit: 1 };
  const opened = { v: 1, session: 1, cursor: 0, vv: {}, credit: 1 };
  assert.equal(parseAck(ack).sources, undefined, "absent from peers that predate it");
  assert.deepEqual(parseAck({ ...ack, sources: ["n1", "n-2"] }).sources, ["n1", "n-2"]);
  assert.deepEqual(parseOpened({ ...opened, sources: [] }).sources, []);
  const tooMany = Array.from({ length: MEMBERS_MAX + 1 }, (_, i) => `n${i}`);
  for (const sources of ["n1", [""], ["n1~0000000a"], [7], tooMany]) {
    assert.throws(() => parseAck({ ...ack, sources }), ProtocolError);
    assert.throws(() => parseOpened({ ...opened, sources }), ProtocolError);
  }
});

Deno.test("open and opened frames may name the origin the sender's replaced after a crash", () => {
  const open = { v: 1, session: 3, firstLsn: 1, lastLsn: 9, origin: "n1~0000000b" };
  const opened = { v: 1, session: 3, cursor: 0, vv: {}, credit: 10, origin: "n2~0000000b" };
  assert.equal("succeeds" in parseOpen(open), false, "absent unless sent");
  const prev = { prevOrigin: "n1~0000000a", prevThroughLsn: 7 };
  assert.deepEqual(parseOpen({ ...open, ...prev }).succeeds, {
    origin: "n1~0000000a",
    throughLsn: 7,
  });
  assert.deepEqual(parseOpened({ ...opened, ...prev }).succeeds?.throughLsn, 7);
  for (
    const bad of [
      { prevOrigin: "n1~", prevThroughLsn: 7 },
      { prevOrigin: "n1~0000000a" },
      { prevOrigin: "n1~0000000a", prevThroughLsn: -1 },
      { prevThroughLsn: 7 },
    ]
  ) {
    assert.throws(() => parseOpen({ ...open, ...bad }), ProtocolError, JSON.stringify(bad));
    assert.throws(() => parseOpened({ ...opened, ...bad }), ProtocolError, JSON.stringify(bad));
  }
});

Deno.test("read replies round-trip the replier's vector with an empty record, and a malformed one is refused", () => {
  const v = REPL_PROTOCOL_VERSION;
  assert.deepEqual(parseReadOk({ v, id: 4, record: null }), { v, id: 4, record: null });
  assert.deepEqual(
    parseReadOk({ v, id: 4, record: null, vv: { "n1~0000abcd": 9 } }),
    { v, id: 4, record: null, vv: { "n1~0000abcd": 9 } },
  );
  for (
    const vv of [[1], { n1: -1 }, { n1: 1.5 }, "n1", { ["o".repeat(ORIGIN_BYTES_MAX + 1)]: 1 }]
  ) {
    assert.throws(
      () => parseReadOk({ v, id: 4, record: null, vv }),
      ProtocolError,
      JSON.stringify(vv),
    );
  }
});

Deno.test("a snapshot's last chunk may carry the entries its sender held above gaps, as checked ranges", () => {
  const v = REPL_PROTOCOL_VERSION;
  const chunk = {
    v,
    session: 3,
    lsn: 9,
    index: 0,
    last: true,
    vv: { n1: 2 },
    records: new Uint8Array(),
  };
  assert.equal(parseSnap(chunk).ahead, undefined, "absent from older peers");
  assert.deepEqual(parseSnap({ ...chunk, ahead: { n1: [[4, 5], [7, 7]] } }).ahead, {
    n1: [[4, 5], [7, 7]],
  });
  const many = Array.from(
    { length: REPL_SNAP_AHEAD_RANGES_MAX + 1 },
    (_, i) => [2 * i + 4, 2 * i + 4],
  );
  for (
    const ahead of [
      [[4, 5]],
      { n1: [[5, 4]] },
      { n1: [[4, 6], [6, 8]] },
      { n1: [[0, 1]] },
      { n1: [4] },
      { n1: [[4, 5.5]] },
      { ["o".repeat(ORIGIN_BYTES_MAX + 1)]: [[4, 4]] },
      { n1: many },
      { n1: [[4, 4 + AHEAD_ENTRIES_MAX]] },
    ]
  ) {
    assert.throws(() => parseSnap({ ...chunk, ahead }), ProtocolError, JSON.stringify(ahead));
  }
});

Deno.test("opened frames may carry the follower's run, a short string", () => {
  const v = REPL_PROTOCOL_VERSION;
  const frame = { v, session: 1, cursor: 0, vv: {}, credit: 10 };
  assert.equal(parseOpened(frame).run, undefined, "absent from older peers");
  assert.equal(parseOpened({ ...frame, run: "0a1b2c3d" }).run, "0a1b2c3d");
  for (const run of ["", 7, "r".repeat(RUN_ID_BYTES_MAX + 1)]) {
    assert.throws(() => parseOpened({ ...frame, run }), ProtocolError, JSON.stringify(run));
  }
});
