import assert from "node:assert/strict";
import {
  BackupIntegrityError,
  backupName,
  isSafeBackupPath,
  parseManifest,
  sealManifest,
} from "./manifest.ts";
import { backupsToPrune } from "./backup.ts";

const file = {
  path: "wal/00000000000000000001.wal",
  bytes: 64,
  kind: "wal" as const,
  firstLsn: 1,
  lastLsn: 0,
  sha256: "a".repeat(64),
};
const manifest = sealManifest({
  format: 1,
  kind: "full",
  createdMs: 0,
  nodeId: "n1",
  clusterId: "c1",
  base: null,
  firstLsn: 1,
  lastLsn: 0,
  snapshotLsn: null,
  source: "127.0.0.1:9090",
  files: [file],
});

Deno.test("isSafeBackupPath() accepts data directory shapes only", () => {
  for (
    const ok of ["node.json", "wal/00000000000000000001.wal", "snapshots/00000000000000000042.snap"]
  ) {
    assert.ok(isSafeBackupPath(ok), ok);
  }
  for (
    const bad of [
      "../node.json",
      "/etc/passwd",
      "wal/../../x",
      "wal/1.wal",
      "snapshots/00000000000000000042.snap/..",
      "wal\\00000000000000000001.wal",
      "",
      "./node.json",
      "wal//00000000000000000001.wal",
    ]
  ) {
    assert.ok(!isSafeBackupPath(bad), bad);
  }
});

Deno.test("parseManifest() accepts a sealed manifest and refuses edits, bad paths, bad bases and bad last entries", () => {
  assert.deepEqual(parseManifest(JSON.stringify(manifest), "m"), manifest);
  assert.throws(
    () => parseManifest(JSON.stringify({ ...manifest, lastLsn: 5 }), "m"),
    /checksum does not match/,
  );
  assert.throws(() => parseManifest("{", "m"), BackupIntegrityError);
  assert.throws(
    () => parseManifest(JSON.stringify({ ...manifest, format: 2 }), "m"),
    /not a format 1/,
  );
  const { checksum: _c, ...rest } = manifest;
  assert.throws(
    () =>
      parseManifest(
        JSON.stringify(sealManifest({ ...rest, files: [{ ...file, path: "../../x" }] })),
        "m",
      ),
    /could escape the target/,
  );
  assert.throws(
    () => parseManifest(JSON.stringify(sealManifest({ ...rest, base: "../other" })), "m"),
    /not a backup name/,
  );
  assert.throws(
    () =>
      parseManifest(
        JSON.stringify(sealManifest({ ...rest, files: [{ ...file, sha256: "nope" }] })),
        "m",
      ),
    /bad size or checksum/,
  );
  const named = sealManifest({ ...rest, lastEntry: { origin: "n1~00000001", seq: 3, hlc: 7 } });
  assert.deepEqual(parseManifest(JSON.stringify(named), "m"), named);
  for (const lastEntry of [{ origin: "", seq: 3, hlc: 7 }, { origin: "n1", seq: 0, hlc: 7 }, {}]) {
    assert.throws(
      () => parseManifest(JSON.stringify(sealManifest({ ...rest, lastEntry } as never)), "m"),
      /lastEntry .* is not an origin, a sequence number and an HLC/,
    );
  }
});

Deno.test("backupName() sorts in time order and is UTC to the millisecond", () => {
  assert.equal(backupName(Date.UTC(2026, 10, 22, 1, 2, 3, 45)), "20261122T010203045Z");
  assert.ok(backupName(1000) < backupName(1001));
});

Deno.test("backupsToPrune() keeps the newest N and every base they build on", () => {
  const bases = new Map<string, string | null>([
    ["a", null],
    ["b", "a"],
    ["c", "b"],
    ["d", null],
    ["e", "d"],
  ]);
  const names = [...bases.keys()];
  assert.deepEqual(backupsToPrune(names, bases, 1), ["a", "b", "c"]);
  assert.deepEqual(backupsToPrune(names, bases, 2), ["a", "b", "c"]);
  assert.deepEqual(backupsToPrune(names, bases, 3), []);
  assert.deepEqual(backupsToPrune(["a", "b", "c"], bases, 1), []);
  assert.deepEqual(backupsToPrune(names, bases, 100), []);
});
