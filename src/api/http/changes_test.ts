import assert from "node:assert/strict";
import { CHANGES_QUEUE_ENTRIES_MAX } from "../../common/limits.ts";
import { Store } from "../../storage/kv/store.ts";
import { appendInput } from "../../../tests/support/entries.ts";
import { withTempDir } from "../../../tests/support/temp_dir.ts";
import { readyContext } from "./_served.ts";
import { createApp } from "./app.ts";
import { ChangeQueue } from "./replication_routes.ts";
import type { Entry } from "../../common/entry.ts";

const utf8 = new TextEncoder();

function withStore(fn: (app: ReturnType<typeof createApp>, store: Store) => Promise<void>) {
  return withTempDir("changes-test-", async (dataDir) => {
    const store = await Store.open({ dataDir, nodeId: "n1" });
    try {
      await fn(createApp(readyContext(store)), store);
    } finally {
      await store.close({ snapshot: false });
    }
  });
}

/** Reads feed lines until `count` entries arrived (the feed never ends on its own). */
async function readLines(
  reader: ReadableStreamDefaultReader<string>,
  count: number,
  carry: { rest: string },
): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  while (out.length < count) {
    let nl;
    while (out.length < count && (nl = carry.rest.indexOf("\n")) >= 0) {
      out.push(JSON.parse(carry.rest.slice(0, nl)));
      carry.rest = carry.rest.slice(nl + 1);
    }
    if (out.length >= count) break;
    const { done, value } = await reader.read();
    assert.equal(done, false, `feed ended after ${out.length} of ${count} entries`);
    carry.rest += value;
  }
  return out;
}

/** What `GET /v1/log` answers for the same LSNs: the WAL's own view of every entry. */
async function logEntries(
  app: ReturnType<typeof createApp>,
  from: number,
  count: number,
): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  while (out.length < count) {
    const res = await app.request(`/v1/log?from=${from + out.length}&limit=1000`);
    const body = await res.json();
    assert.ok(body.entries.length > 0);
    out.push(...body.entries);
  }
  return out.slice(0, count);
}

Deno.test("the change feed streams every applied entry once, in LSN order, as the log reads it, past a full queue", async () => {
  await withStore(async (app, store) => {
    await store.put("before-1", utf8.encode('"a"'), "application/json");
    await store.put("before-2", new Uint8Array([0, 1, 2, 0xff]), "application/octet-stream");
    let walReads = 0;
    const readLog = store.readLog.bind(store);
    store.readLog = (from, limit) => {
      walReads++;
      return readLog(from, limit);
    };
    const res = await app.request("/v1/changes?from=1");
    assert.equal(res.status, 200);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    const carry = { rest: "" };
    const seen = await readLines(reader, 2, carry); // from the WAL: the feed starts in the past
    assert.ok(walReads > 0);
    const readsBeforeLive = walReads;

    // Caught up: these come from the feed's queue, a few at a time.
    for (let i = 0; i < 20; i++) {
      await store.put(`live-${i}`, new Uint8Array([i, 255 - i]), "application/octet-stream");
      seen.push(...await readLines(reader, 1, carry));
    }
    assert.equal(walReads, readsBeforeLive, "a caught-up feed answers from its queue");
    // Not reading while more entries land than the queue holds: it stops taking them, and
    // the WAL serves the ones it missed.
    const burst = CHANGES_QUEUE_ENTRIES_MAX + 250;
    await Promise.all(
      Array.from(
        { length: burst },
        (_, i) => store.put(`burst-${i}`, new Uint8Array([i & 0xff]), "application/octet-stream"),
      ),
    );
    await store.append(utf8.encode("an opaque entry"), "application/octet-stream");
    seen.push(...await readLines(reader, burst + 1, carry));
    assert.ok(walReads > readsBeforeLive, "what the full queue missed comes from the WAL");
    await reader.cancel();

    assert.equal(seen.length, store.lastLsn);
    assert.deepEqual(
      seen.map((e) => e.lsn),
      Array.from({ length: store.lastLsn }, (_, i) => i + 1),
    );
    assert.deepEqual(seen, await logEntries(app, 1, store.lastLsn));
    assert.equal(carry.rest, "");
  });
});

/** An entry as the store hands it to listeners: a test append with its LSN. */
const entry = (lsn: number): Entry => ({ ...appendInput(lsn), lsn });

Deno.test("ChangeQueue hands out only entries that continue from the cursor, and keeps at most max", () => {
  const queue = new ChangeQueue(4);
  for (const lsn of [1, 2, 3, 4, 5]) queue.push(entry(lsn)); // 5 does not fit
  assert.equal(queue.size, 4);
  assert.deepEqual(queue.take(1, 2).map((e) => e.lsn), [1, 2]);
  assert.deepEqual(queue.take(3, 10).map((e) => e.lsn), [3, 4]);
  // 5 was dropped while the queue was full: 6 and 7 arrive, but the cursor is at 5.
  queue.push(entry(6));
  queue.push(entry(7));
  assert.deepEqual(queue.take(5, 10), [], "a gap: the WAL serves 5");
  assert.equal(queue.size, 2, "what follows the gap stays");
  assert.deepEqual(queue.take(6, 10).map((e) => e.lsn), [6, 7]);
  // Entries the cursor has passed (read from the WAL meanwhile) are dropped.
  for (const lsn of [8, 9, 10]) queue.push(entry(lsn));
  assert.deepEqual(queue.take(10, 10).map((e) => e.lsn), [10]);
  assert.equal(queue.size, 0);
});

Deno.test("ChangeQueue bounds the bytes of the values it keeps", () => {
  const queue = new ChangeQueue(100, 3);
  const big = (lsn: number, bytes: number): Entry => ({
    ...entry(lsn),
    value: new Uint8Array(bytes),
  });
  queue.push(big(1, 2));
  queue.push(big(2, 2)); // 4 bytes would be over 3: not kept
  queue.push({ ...entry(3), op: "delete", value: null }); // a delete holds no value
  assert.equal(queue.size, 2);
  assert.equal(queue.bytes, 2);
  assert.deepEqual(queue.take(1, 10).map((e) => e.lsn), [1]);
  assert.equal(queue.bytes, 0);
  assert.deepEqual(queue.take(2, 10), [], "2 was not kept: the WAL serves it");
  queue.push(big(4, 3));
  assert.equal(queue.bytes, 3);
  assert.deepEqual(
    queue.take(4, 10).map((e) => e.lsn),
    [4],
    "3 was passed by the cursor and dropped",
  );
  assert.equal(queue.bytes, 0);
});
