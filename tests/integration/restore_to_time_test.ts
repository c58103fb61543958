/**
 * `shanghai restore --to-time` refuses a time it cannot meet, through the real CLI: exit 2, one
 * line on stderr naming the problem, and the target left as it was (absent stays absent, an
 * empty directory stays empty, no `<target>.restore-tmp-*` beside it).
 *
 * The backup comes from a real node with small segments and frequent snapshots, so its snapshot
 * is past the first sealed segment and it ships the WAL after the snapshot only: a time before
 * the snapshot is not in it (docs/OPERATIONS.md, "Restore").
 */
import assert from "node:assert/strict";
import type { BackupManifest } from "../../src/backup/manifest.ts";
import { hlcWallMs } from "../../src/common/hlc.ts";
import { readSnapshot } from "../../src/storage/kv/snapshot.ts";
import { runCli, spawnSmallSegmentNode, tempDir } from "../support/node_process.ts";

const WRITES = 800;
const WRITERS = 4;

/** Writes `k<i>` with a few concurrent writers; returns each write's HLC by LSN. */
async function writeKeys(addr: string): Promise<Map<number, number>> {
  const hlcByLsn = new Map<number, number>();
  let next = 0;
  const writer = async () => {
    while (next < WRITES) {
      const i = next++;
      const response = await fetch(`http://${addr}/v1/kv/k${i}`, {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(`v${i}-${"x".repeat(400)}`),
      });
      assert.equal(response.status, 200);
      const body = await response.json();
      hlcByLsn.set(body.lsn, Number(String(body.version).split(".")[0]));
    }
  };
  await Promise.all(Array.from({ length: WRITERS }, writer));
  return hlcByLsn;
}

/** Names in `dir` that start with `prefix`. */
async function namesStartingWith(dir: string, prefix: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.name.startsWith(prefix)) names.push(entry.name);
  }
  return names.sort();
}

/** Asserts the CLI refused with exit 2 and exactly one stderr line matching `pattern`. */
function assertRefused(cli: { code: number; stdout: string; stderr: string }, pattern: RegExp) {
  assert.equal(cli.code, 2, cli.stderr);
  assert.equal(cli.stdout, "", "a refusal prints no summary");
  const lines = cli.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line, not a stack trace:\n${cli.stderr}`);
  assert.match(lines[0], pattern);
}

/**
 * A full backup of a node that wrote {@link WRITES} keys with 128 KiB segments and a snapshot
 * every 150 KB of WAL: its newest snapshot is past the first segment, so the backup ships the
 * WAL from a later segment on.
 */
async function backupOfBusyNode(
  root: string,
): Promise<{ backup: string; manifest: BackupManifest; hlcByLsn: Map<number, number> }> {
  const node = await spawnSmallSegmentNode(`${root}/node`, { snapshotEveryBytes: 150_000 });
  try {
    const hlcByLsn = await writeKeys(node.addr);
    const cli = await runCli(["backup", "--to", `${root}/backups`, "--addr", node.addr, "--json"]);
    assert.equal(cli.code, 0, cli.stderr);
    const backup: string = JSON.parse(cli.stdout).path;
    const manifest = JSON.parse(await Deno.readTextFile(`${backup}/manifest.json`));
    return { backup, manifest, hlcByLsn };
  } finally {
    await node.stop();
  }
}

Deno.test("restore --to-time refuses a time the backup does not hold and leaves the target untouched", async (t) => {
  const root = await tempDir("shanghai-restore-to-time-test-");
  try {
    const { backup, manifest, hlcByLsn } = await backupOfBusyNode(root);
    // What makes the early time unreachable: a snapshot, and no WAL from LSN 1 to replay.
    const snapshotFile = manifest.files.find((f) => f.kind === "snapshot");
    assert.ok(snapshotFile && manifest.snapshotLsn, "the backup holds a snapshot");
    const walFirstLsn = Math.min(
      ...manifest.files.filter((f) => f.kind === "wal").map((f) => f.firstLsn!),
    );
    assert.ok(walFirstLsn > 1, `the backup's WAL starts after LSN 1 (at ${walFirstLsn})`);
    const snapshot = readSnapshot(`${backup}/${snapshotFile.path}`);
    // The time of the first write: a state this node had, but not one the backup can rebuild.
    const earlyMs = hlcWallMs(hlcByLsn.get(1)!);
    assert.ok(hlcWallMs(snapshot.hlc) > earlyMs, "the snapshot holds writes after that time");
    const early = new Date(earlyMs).toISOString();
    const restoreTo = (target: string, time: string) =>
      runCli(["restore", "--from", backup, "--data-dir", target, "--to-time", time]);

    await t.step("an absent target stays absent, with no temp folder beside it", async () => {
      const target = `${root}/absent`;
      const cli = await restoreTo(target, early);
      assertRefused(
        cli,
        new RegExp(
          `^shanghai restore: Cannot restore to ${early.replaceAll(".", "\\.")}: ` +
            `this backup's snapshot \\(LSN ${manifest.snapshotLsn}\\) already holds writes up to ` +
            `\\S+; restore from an older backup$`,
        ),
      );
      await assert.rejects(() => Deno.stat(target), Deno.errors.NotFound);
      assert.deepEqual(await namesStartingWith(root, "absent"), []);
    });

    await t.step("an empty target directory stays, empty", async () => {
      const target = `${root}/empty`;
      await Deno.mkdir(target);
      const before = await Deno.stat(target);
      // As Unix ms this time, the same refusal.
      const cli = await restoreTo(target, String(earlyMs));
      assertRefused(cli, /^shanghai restore: Cannot restore to .*restore from an older backup$/);
      const after = await Deno.stat(target);
      assert.ok(after.isDirectory);
      assert.equal(after.ino, before.ino, "the same directory, not a replacement");
      assert.equal(after.mtime?.getTime(), before.mtime?.getTime(), "nothing created in it");
      assert.deepEqual(await namesStartingWith(target, ""), []);
      assert.deepEqual(await namesStartingWith(root, "empty"), ["empty"]);
    });

    await t.step("a time that does not parse is refused before the backup is read", async () => {
      const target = `${root}/unparsed`;
      const cli = await restoreTo(target, "yesterday-ish");
      assertRefused(
        cli,
        /^shanghai restore: Invalid --to-time "yesterday-ish": expected ISO 8601 or Unix ms$/,
      );
      assert.deepEqual(await namesStartingWith(root, "unparsed"), []);
    });

    await t.step("a time at or after the snapshot restores from the same backup", async () => {
      const target = `${root}/held`;
      const lastMs = Math.max(...[...hlcByLsn.values()].map(hlcWallMs));
      const cli = await restoreTo(target, new Date(lastMs).toISOString());
      assert.equal(cli.code, 0, cli.stderr);
      assert.match(cli.stdout, new RegExp(`^restore ok .* last_lsn=${manifest.lastLsn} `));
      assert.equal(cli.stderr, "", "a time the backup covers needs no note");
      assert.deepEqual(await namesStartingWith(root, "held"), ["held"]);
    });

    await t.step("a time after the backup was taken restores it all, and says so", async () => {
      const target = `${root}/later`;
      const later = new Date(manifest.createdMs + 3_600_000).toISOString();
      const cli = await restoreTo(target, later);
      assert.equal(cli.code, 0, cli.stderr);
      assert.match(cli.stdout, new RegExp(`^restore ok .* last_lsn=${manifest.lastLsn} `));
      assert.match(
        cli.stderr.trim(),
        new RegExp(
          `^shanghai restore: note: --to-time ${later.replaceAll(".", "\\.")} is after this ` +
            `backup was taken \\(\\S+\\): restored everything it holds, up to LSN ` +
            `${manifest.lastLsn}; later writes are not in it$`,
        ),
      );
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
