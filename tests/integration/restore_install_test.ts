/**
 * Restore of a node that got entries through a snapshot install (replication, when its resume
 * point was removed by retention): those entries are in its snapshots, never in its WAL, so a
 * restore that replays the WAL from LSN 1 instead of starting from the snapshot would lose them.
 *
 * The backup folder is built in process the way a full backup session cuts one (the newest
 * snapshot, every WAL segment, node.json, a sealed manifest), from a Store that installs a
 * peer's snapshot the way src/replication/ does (mergeRecords, then installSnapshot).
 */
import assert from "node:assert/strict";
import {
  type BackupManifest,
  MANIFEST_FILE,
  type ManifestFile,
  sealManifest,
  sha256Hex,
} from "../../src/backup/manifest.ts";
import {
  RestoreCutUnavailableError,
  RestoreRefusedError,
  runRestore,
} from "../../src/backup/restore.ts";
import { listSnapshots, readSnapshot, writeSnapshot } from "../../src/storage/kv/snapshot.ts";
import { Store } from "../../src/storage/kv/store.ts";
import { runCli, tempDir } from "../support/node_process.ts";

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array | null | undefined) => b ? new TextDecoder().decode(b) : undefined;

/**
 * n3 writes LSN 1-2, installs n1's snapshot (x) at LSN 2, writes LSN 3-4, snapshots at LSN 4
 * (carrying snapshotOnly forward) and writes LSN 5; the backup holds that snapshot and the WAL
 * from LSN 1.
 */
async function nodeWithInstall(dataDir: string, backup: string): Promise<void> {
  const store = await Store.open({
    dataDir,
    nodeId: "n3",
    snapshotEveryBytes: 0,
    retainBytes: 1 << 30,
  });
  await store.put("own", bytes("1"), "text/plain");
  await store.put("early", bytes("e"), "text/plain");
  store.mergeRecords([
    ["x", {
      value: bytes("from-n1"),
      contentType: "text/plain",
      hlc: store.hlcNow() + 1024,
      origin: "n1",
      seq: 7,
      lsn: 0,
      prevHlc: 0,
      prevOrigin: "",
    }],
    ["own", store.get("own")!],
    ["early", store.get("early")!],
  ], "n1"); // n3:2 is in its view
  await store.installSnapshot({ n1: 7, n3: 2 }, store.hlcNow(), "n1");
  await store.put("own", bytes("3"), "text/plain");
  await store.put("late", bytes("l"), "text/plain");
  await store.snapshot();
  await store.put("own", bytes("5"), "text/plain");
  assert.equal(store.lastLsn, 5);
  const segments = store.wal.segments();
  await store.close({ snapshot: false });

  const [snapshot] = await listSnapshots(`${dataDir}/snapshots`);
  assert.equal(snapshot.lsn, 4);
  const meta = readSnapshot(snapshot.path);
  assert.deepEqual(meta.snapshotOnly, { n1: 7 });
  assert.equal(meta.installLsn, 2);
  assert.equal(segments[0].firstLsn, 1);

  const files: ManifestFile[] = [];
  const add = async (from: string, info: Omit<ManifestFile, "bytes" | "sha256">) => {
    const content = await Deno.readFile(from);
    await Deno.writeFile(`${backup}/${info.path}`, content);
    files.push({ ...info, bytes: content.length, sha256: sha256Hex(content) });
  };
  await Deno.mkdir(`${backup}/snapshots`, { recursive: true });
  await Deno.mkdir(`${backup}/wal`, { recursive: true });
  await Deno.writeTextFile(
    `${dataDir}/node.json`,
    JSON.stringify({ format: 1, nodeId: "n3", clusterId: "c1", createdMs: 1 }),
  );
  await add(`${dataDir}/node.json`, { path: "node.json", kind: "identity" });
  await add(snapshot.path, {
    path: `snapshots/${String(snapshot.lsn).padStart(20, "0")}.snap`,
    kind: "snapshot",
    lastLsn: snapshot.lsn,
  });
  for (const s of segments) {
    await add(`${dataDir}/wal/${s.fileName}`, {
      path: `wal/${s.fileName}`,
      kind: "wal",
      firstLsn: s.firstLsn,
      lastLsn: s.lastLsn,
    });
  }
  const manifest = sealManifest({
    format: 1,
    kind: "full",
    createdMs: Date.now(),
    nodeId: "n3",
    clusterId: "c1",
    base: null,
    firstLsn: 1,
    lastLsn: 5,
    snapshotLsn: snapshot.lsn,
    source: "in-process",
    files,
  });
  await Deno.writeTextFile(`${backup}/${MANIFEST_FILE}`, JSON.stringify(manifest));
}

async function restored(
  dataDir: string,
): Promise<{ values: Record<string, string | undefined>; snapshotOnly: object }> {
  const store = await Store.open({ dataDir, nodeId: "n3" });
  try {
    const values: Record<string, string | undefined> = {};
    for (const key of ["own", "early", "x", "late"]) values[key] = text(store.get(key)?.value);
    return { values, snapshotOnly: store.snapshotOnly() };
  } finally {
    await store.close({ snapshot: false });
  }
}

Deno.test("restore keeps what a snapshot install brought, or refuses a cut it cannot produce", async (t) => {
  const root = await tempDir("restore-install-");
  try {
    const backup = `${root}/backup`;
    await Deno.mkdir(backup);
    await nodeWithInstall(`${root}/node`, backup);

    await t.step(
      "a cut between the install and the snapshot is refused, not restored without the install",
      async () => {
        for (const toLsn of [2, 3]) {
          const target = `${root}/to-${toLsn}`;
          await assert.rejects(
            () => runRestore({ from: backup, dataDir: target, toLsn }),
            (error: Error) => {
              assert.ok(error instanceof RestoreRefusedError, String(error));
              assert.ok(error instanceof RestoreCutUnavailableError, String(error));
              assert.match(error.message, /snapshot install at LSN 2/);
              assert.match(error.message, /LSN 0\.\.1 .*or LSN 4\.\.5/);
              return true;
            },
          );
          assert.equal(await Deno.stat(target).then(() => true, () => false), false);
        }
      },
    );

    await t.step("a cut before the install replays the WAL: that state never had it", async () => {
      const summary = await runRestore({ from: backup, dataDir: `${root}/to-1`, toLsn: 1 });
      assert.equal(summary.snapshotLsn, null);
      assert.equal(summary.lastLsn, 1);
      const state = await restored(`${root}/to-1`);
      assert.deepEqual(state.values, { own: "1", early: undefined, x: undefined, late: undefined });
      assert.deepEqual(state.snapshotOnly, {});
    });

    await t.step(
      "cuts at or after the snapshot start from it and keep the installed keys",
      async () => {
        for (const [toLsn, own] of [[4, "3"], [5, "5"], [undefined, "5"]] as const) {
          const target = `${root}/at-${toLsn ?? "end"}`;
          const summary = await runRestore({ from: backup, dataDir: target, toLsn });
          assert.equal(summary.snapshotLsn, 4);
          const state = await restored(target);
          assert.deepEqual(state.values, { own, early: "e", x: "from-n1", late: "l" });
          assert.deepEqual(state.snapshotOnly, { n1: 7 });
        }
      },
    );

    await t.step(
      "a snapshot from before installLsn existed allows no replay below it",
      async () => {
        const copy = `${root}/old-format`;
        await Deno.mkdir(`${copy}/snapshots`, { recursive: true });
        await Deno.mkdir(`${copy}/wal`);
        const manifest = JSON.parse(
          await Deno.readTextFile(`${backup}/${MANIFEST_FILE}`),
        ) as BackupManifest;
        const { checksum: _old, ...rest } = manifest;
        for (const [i, file] of rest.files.entries()) {
          if (file.kind !== "snapshot") {
            await Deno.copyFile(`${backup}/${file.path}`, `${copy}/${file.path}`);
            continue;
          }
          const { records, keys: _keys, installLsn: _dropped, ...meta } = readSnapshot(
            `${backup}/${file.path}`,
          );
          const written = await writeSnapshot(`${copy}/snapshots`, meta, {
            keys: records.map(([key]) => key),
            records: records.map(([, record]) => record),
          });
          const content = await Deno.readFile(written.path);
          rest.files[i] = { ...file, bytes: content.length, sha256: sha256Hex(content) };
        }
        await Deno.writeTextFile(`${copy}/${MANIFEST_FILE}`, JSON.stringify(sealManifest(rest)));
        for (const toLsn of [1, 3]) {
          await assert.rejects(
            () => runRestore({ from: copy, dataDir: `${root}/old-${toLsn}`, toLsn }),
            (error: Error) => {
              assert.ok(error instanceof RestoreCutUnavailableError, String(error));
              assert.match(error.message, /predates the record of the install's LSN/);
              assert.match(error.message, /possible cuts: LSN 4\.\.5 \(from the snapshot\)$/);
              return true;
            },
          );
        }
        const summary = await runRestore({ from: copy, dataDir: `${root}/old-4`, toLsn: 4 });
        assert.equal(summary.snapshotLsn, 4);
        assert.equal((await restored(`${root}/old-4`)).values.x, "from-n1");
      },
    );

    await t.step("the CLI exits 1 with the reason and the possible cuts", async () => {
      const cli = await runCli([
        "restore",
        "--from",
        backup,
        "--data-dir",
        `${root}/cli-3`,
        "--to-lsn",
        "3",
      ]);
      assert.equal(cli.code, 1, cli.stderr);
      assert.match(cli.stderr, /not in the WAL/);
      assert.match(cli.stderr, /LSN 0\.\.1 .*or LSN 4\.\.5/);
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
