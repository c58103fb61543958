import assert from "node:assert/strict";
import { InputError, TooLargeError } from "../../common/errors.ts";
import { listSnapshots, readSnapshot } from "./snapshot.ts";
import { Store } from "./store.ts";

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array | null | undefined) => b ? new TextDecoder().decode(b) : undefined;

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "store-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("Store: writes are readable once acknowledged and survive reopening", async () => {
  await withDir(async (dataDir) => {
    const store = await Store.open({ dataDir, nodeId: "n1" });
    const a = await store.put("a", bytes("1"), "text/plain");
    assert.equal(a.lsn, 1);
    assert.equal(text(store.get("a")?.value), "1");
    await store.put("b", bytes("2"), "text/plain");
    await store.delete("a");
    await store.append(bytes("log"));
    await store.close({ snapshot: false });
    const again = await Store.open({ dataDir, nodeId: "n1" });
    assert.equal(again.get("a"), undefined);
    assert.equal(text(again.get("b")?.value), "2");
    assert.equal(again.lastLsn, 4);
    assert.deepEqual(again.versionVector(), { n1: 4 });
    // Sequence numbers continue, never reused.
    assert.equal((await again.put("c", bytes("3"), "text/plain")).seq, 5);
    await again.close();
  });
});

Deno.test("Store: a snapshot plus the WAL after it restores the state; restart replays only the tail", async () => {
  await withDir(async (dataDir) => {
    const store = await Store.open({ dataDir, nodeId: "n1", snapshotEveryBytes: 0 });
    for (let i = 0; i < 50; i++) await store.put(`k${i % 10}`, bytes(`v${i}`), "text/plain");
    await store.snapshot();
    assert.equal(store.snapshotLsn, 50);
    for (let i = 50; i < 60; i++) await store.put(`k${i % 10}`, bytes(`v${i}`), "text/plain");
    await store.close({ snapshot: false });
    const snaps = await listSnapshots(`${dataDir}/snapshots`);
    assert.deepEqual(snaps.map((s) => s.lsn), [50]);
    const snap = await readSnapshot(snaps[0].path);
    assert.equal(snap.keys, 10);
    let replayed = 0;
    const again = await Store.open({ dataDir, nodeId: "n1" });
    again.onApply(() => replayed++);
    assert.equal(again.snapshotLsn, 50);
    assert.equal(again.lastLsn, 60);
    for (let i = 0; i < 10; i++) assert.equal(text(again.get(`k${i}`)?.value), `v${50 + i}`);
    assert.equal(replayed, 0, "listeners attached after open see only new entries");
    await again.close();
  });
});

Deno.test("Store: a damaged newest snapshot falls back to the older one and a longer replay", async () => {
  await withDir(async (dataDir) => {
    const store = await Store.open({
      dataDir,
      nodeId: "n1",
      snapshotEveryBytes: 0,
      retainBytes: 1 << 30,
    });
    await store.put("a", bytes("1"), "text/plain");
    await store.snapshot();
    await store.put("a", bytes("2"), "text/plain");
    await store.snapshot();
    await store.put("a", bytes("3"), "text/plain");
    await store.close({ snapshot: false });
    const [newest] = await listSnapshots(`${dataDir}/snapshots`);
    const raw = await Deno.readFile(newest.path);
    raw[raw.length - 3] ^= 0xff;
    await Deno.writeFile(newest.path, raw);
    const again = await Store.open({ dataDir, nodeId: "n1" });
    assert.equal(again.snapshotLsn, 1);
    assert.equal(text(again.get("a")?.value), "3");
    await again.close();
  });
});

Deno.test("Store: retention removes segments a snapshot covers but keeps the configured tail", async () => {
  await withDir(async (dataDir) => {
    const value = new Uint8Array(1024);
    const store = await Store.open({
      dataDir,
      nodeId: "n1",
      segmentBytesMax: 64 * 1024,
      batchBytesMax: 64 * 1024,
      snapshotEveryBytes: 0,
      retainBytes: 128 * 1024,
    });
    for (let i = 0; i < 600; i++) await store.put(`k${i % 20}`, value, "application/octet-stream");
    const segmentsBefore = store.wal.segments().length;
    await store.snapshot();
    await store.put("x", value, "application/octet-stream");
    await store.snapshot();
    const after = store.wal.segments();
    assert.ok(after.length < segmentsBefore, `${after.length} vs ${segmentsBefore}`);
    const kept = after.reduce((sum, s) => sum + s.bytes, 0);
    assert.ok(kept >= 128 * 1024, `kept ${kept} bytes`);
    await store.close();
    const again = await Store.open({
      dataDir,
      nodeId: "n1",
      segmentBytesMax: 64 * 1024,
      batchBytesMax: 64 * 1024,
    });
    assert.equal(again.keyspace.size, 21);
    assert.equal(again.lastLsn, 601);
    await again.close();
  });
});

Deno.test("Store refuses bad keys and oversize values without writing", async () => {
  await withDir(async (dataDir) => {
    const store = await Store.open({ dataDir, nodeId: "n1", valueBytesMax: 10 });
    assert.throws(() => store.put("", bytes("x"), "text/plain"), InputError);
    assert.throws(() => store.put("a\u0000b", bytes("x"), "text/plain"), InputError);
    assert.throws(() => store.put("k".repeat(1025), bytes("x"), "text/plain"), InputError);
    assert.throws(() => store.put("ok", new Uint8Array(11), "text/plain"), TooLargeError);
    assert.equal(store.lastLsn, 0);
    await store.close();
  });
});

Deno.test("Store.applyRemote() keeps the origin's identity and drops duplicates", async () => {
  await withDir(async (dataDir) => {
    const store = await Store.open({ dataDir, nodeId: "n1" });
    const remote = {
      origin: "n2",
      seq: 1,
      hlc: 5,
      op: "put" as const,
      key: "r",
      value: bytes("remote"),
      contentType: "text/plain",
      prevHlc: 0,
      prevOrigin: "",
    };
    const [first, dup] = await Promise.all([store.applyRemote(remote), store.applyRemote(remote)]);
    assert.equal(first, 1);
    assert.equal(dup, undefined);
    assert.equal(await store.applyRemote(remote), undefined);
    assert.equal(store.get("r")?.origin, "n2");
    assert.deepEqual(store.versionVector(), { n2: 1 });
    // The local clock moved past the remote timestamp.
    const local = await store.put("l", bytes("x"), "text/plain");
    assert.ok(local.hlc > 5);
    await store.close();
  });
});
