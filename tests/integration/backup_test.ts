/**
 * Online backup under write load, restore into a new node, point-in-time cuts, and every
 * refusal: a non-empty target, a tampered file, a missing file, a manifest path escaping the
 * target, an edited manifest, a held lock.
 */
import assert from "node:assert/strict";
import { runBackup } from "../../src/backup/backup.ts";
import { type BackupManifest, MANIFEST_FILE, sealManifest } from "../../src/backup/manifest.ts";
import { runRestore } from "../../src/backup/restore.ts";
import { hlcWallMs } from "../../src/common/hlc.ts";
import { Store } from "../../src/storage/kv/store.ts";
import { runCli, spawnNode, spawnSmallSegmentNode, tempDir } from "../support/node_process.ts";
import { loseWalTail } from "../support/wal_damage.ts";

interface Acked {
  key: string;
  value: string;
  lsn: number;
  hlc: number;
}

/** PUTs `value` as JSON under `key` and asserts the node accepted it. */
async function putJson(addr: string, key: string, value: unknown): Promise<Response> {
  const response = await fetch(`http://${addr}/v1/kv/${key}`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(value),
  });
  assert.equal(response.status, 200);
  return response;
}

/** Writes `k<i>` = `"v<i>"` with a few writers until `stop` resolves or the bound is hit. */
function writeLoad(addr: string, stop: Promise<void>, acked: Acked[]): Promise<void> {
  const WRITES_MAX = 4000;
  const deadline = Date.now() + 20_000;
  let next = 0;
  let stopped = false;
  stop.then(() => stopped = true);
  const writer = async () => {
    while (!stopped && next < WRITES_MAX && Date.now() < deadline) {
      const i = next++;
      const key = `k${String(i).padStart(5, "0")}`;
      const value = `v${i}-${"x".repeat(200)}`;
      const body = await (await putJson(addr, key, value)).json();
      acked.push({ key, value, lsn: body.lsn, hlc: Number(String(body.version).split(".")[0]) });
    }
  };
  return Promise.all([writer(), writer(), writer(), writer()]).then(() => {});
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Every key and value of a data directory, read by opening its store (no snapshot on close). */
async function readAll(dataDir: string): Promise<{ lastLsn: number; values: Map<string, string> }> {
  const store = await Store.open({ dataDir, nodeId: "reader" });
  try {
    const values = new Map<string, string>();
    for (const [key, record] of store.scan({ limit: 100_000 })) {
      if (record.value) values.set(key, JSON.parse(new TextDecoder().decode(record.value)));
    }
    return { lastLsn: store.lastLsn, values };
  } finally {
    await store.close({ snapshot: false });
  }
}

function expectCut(values: Map<string, string>, acked: Acked[], cut: number): void {
  let present = 0;
  for (const a of acked) {
    if (a.lsn <= cut) {
      assert.equal(
        values.get(a.key),
        a.value,
        `key ${a.key} (LSN ${a.lsn}) missing or wrong after a cut at ${cut}`,
      );
      present++;
    } else {
      assert.ok(
        !values.has(a.key),
        `key ${a.key} (LSN ${a.lsn}) is past the cut at ${cut} but was restored`,
      );
    }
  }
  assert.equal(values.size, present);
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

Deno.test("backup under write load restores exactly the acknowledged writes up to its LSN", async (t) => {
  const root = await tempDir("shanghai-backup-test-");
  const backups = `${root}/backups`;
  // Small segments and frequent snapshots, so rotation, snapshots and the cut all race the load.
  const node = await spawnSmallSegmentNode(`${root}/node`, { snapshotEveryBytes: 150000 });
  const acked: Acked[] = [];
  const stop = Promise.withResolvers<void>();
  let load: Promise<void> | undefined;
  try {
    load = writeLoad(node.addr, stop.promise, acked);
    await waitFor(() => acked.length >= 300, "300 acknowledged writes");
    const full = await runBackup({ addr: node.addr, toDir: backups });
    assert.equal(full.kind, "full");
    assert.ok(full.lastLsn >= 300, `cut at ${full.lastLsn}`);
    await waitFor(() => acked.length >= full.lastLsn + 300, "300 more writes");
    const incrementalCli = await runCli([
      "backup",
      "--to",
      backups,
      "--addr",
      node.addr,
      "--incremental",
    ]);
    stop.resolve();
    await load;
    assert.equal(incrementalCli.code, 0, incrementalCli.stderr);
    const line = incrementalCli.stdout.trim();
    assert.equal(line.split("\n").length, 1, "one summary line");
    assert.match(
      line,
      /^backup ok name=\d{8}T\d{9}Z kind=incremental base=\d{8}T\d{9}Z lsn=\d+-\d+ files=\d+ bytes=\d+/,
    );
    const [, first, last] = /lsn=(\d+)-(\d+)/.exec(line)!.map(Number);
    assert.equal(first, full.lastLsn + 1);
    const incrementalName = /name=(\S+)/.exec(line)![1];
    const incremental = `${backups}/${incrementalName}`;

    await t.step("backup verify checks both backups", async () => {
      const verify = await runCli(["backup", "verify", backups]);
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
      assert.equal(
        verify.stdout.trim().split("\n").filter((l) => l.startsWith("verify ok")).length,
        2,
      );
    });

    await t.step(
      "restore of the chain into a new node holds every write up to the cut",
      async () => {
        const target = `${root}/restored`;
        const summary = await runRestore({ from: incremental, dataDir: target });
        assert.equal(summary.lastLsn, last);
        assert.equal(summary.chain.length, 2);
        const restored = await spawnNode({ dataDir: target });
        try {
          assert.equal(restored.nodeId, node.nodeId);
          const status = await fetch(`http://${restored.addr}/v1/status`).then((r) => r.json());
          assert.equal(status.lastLsn, last);
          const values = new Map<string, string>();
          let after = "";
          while (true) {
            const page = await fetch(`http://${restored.addr}/v1/kv?limit=1000&after=${after}`)
              .then((r) => r.json());
            for (const item of page.items) values.set(item.key, item.value);
            if (!page.next) break;
            after = page.next;
          }
          expectCut(values, acked, last);
        } finally {
          await restored.stop();
        }
      },
    );

    // Restores the chain through the CLI with `args` (a point-in-time cut) and checks that the
    // target holds exactly the acknowledged writes up to LSN `cut`. Returns the CLI's stdout.
    const restoreExpectingCut = async (
      target: string,
      options: { args: string[]; cut: number },
    ): Promise<string> => {
      const cli = await runCli([
        "restore",
        "--from",
        incremental,
        "--data-dir",
        target,
        ...options.args,
      ]);
      assert.equal(cli.code, 0, cli.stderr);
      const { lastLsn, values } = await readAll(target);
      assert.equal(lastLsn, options.cut);
      expectCut(values, acked, options.cut);
      return cli.stdout;
    };

    await t.step("restore --to-lsn cuts the WAL at that LSN", async () => {
      const cut = full.lastLsn + Math.floor((last - full.lastLsn) / 2);
      const stdout = await restoreExpectingCut(`${root}/to-lsn`, {
        args: ["--to-lsn", String(cut)],
        cut,
      });
      assert.match(stdout, new RegExp(`last_lsn=${cut} `));
    });

    await t.step("restore --to-time keeps the writes at or before that time", async () => {
      const sorted = [...acked].sort((a, b) => a.lsn - b.lsn).filter((a) => a.lsn <= last);
      const pivot = sorted.find((a) => a.lsn > full.lastLsn + 50)!;
      const timeMs = hlcWallMs(pivot.hlc);
      const firstAfter = sorted.find((a) => hlcWallMs(a.hlc) > timeMs);
      const cut = firstAfter ? firstAfter.lsn - 1 : last;
      await restoreExpectingCut(`${root}/to-time`, {
        args: ["--to-time", new Date(timeMs).toISOString()],
        cut,
      });
    });

    await t.step("restore refuses a non-empty target", async () => {
      const target = `${root}/busy`;
      await Deno.mkdir(target);
      await Deno.writeTextFile(`${target}/keep-me`, "x");
      const cli = await runCli(["restore", "--from", incremental, "--data-dir", target]);
      assert.equal(cli.code, 2);
      assert.match(cli.stderr, /it is not empty/);
      assert.equal(await Deno.readTextFile(`${target}/keep-me`), "x");
    });

    // The refusals below work on copies, so each starts from an intact backup.
    const copyBackup = async (name: string): Promise<string> => {
      const dir = `${root}/copies/${name}`;
      await Deno.mkdir(dir, { recursive: true });
      const source = `${backups}/${full.name}`;
      const copy = `${dir}/${full.name}`;
      for (const sub of ["", "/wal", "/snapshots"]) {
        await Deno.mkdir(`${copy}${sub}`, { recursive: true });
      }
      const manifest = JSON.parse(
        await Deno.readTextFile(`${source}/${MANIFEST_FILE}`),
      ) as BackupManifest;
      await Deno.copyFile(`${source}/${MANIFEST_FILE}`, `${copy}/${MANIFEST_FILE}`);
      for (const f of manifest.files) {
        await Deno.copyFile(`${source}/${f.path}`, `${copy}/${f.path}`);
      }
      return copy;
    };

    await t.step("restore and verify refuse a tampered file, and write nothing", async () => {
      const copy = await copyBackup("tampered");
      const manifest = JSON.parse(
        await Deno.readTextFile(`${copy}/${MANIFEST_FILE}`),
      ) as BackupManifest;
      const wal = manifest.files.find((f) => f.kind === "wal")!;
      const bytes = await Deno.readFile(`${copy}/${wal.path}`);
      bytes[bytes.length - 10] ^= 0xff;
      await Deno.writeFile(`${copy}/${wal.path}`, bytes);
      const target = `${root}/from-tampered`;
      const cli = await runCli(["restore", "--from", copy, "--data-dir", target]);
      assert.equal(cli.code, 1);
      assert.match(cli.stderr, /does not match its SHA-256/);
      assert.equal(await exists(target), false);
      const verify = await runCli(["backup", "verify", copy]);
      assert.equal(verify.code, 1);
      assert.match(verify.stdout, /verify FAILED .*does not match its SHA-256/);
    });

    await t.step("restore refuses a missing file", async () => {
      const copy = await copyBackup("missing");
      const manifest = JSON.parse(
        await Deno.readTextFile(`${copy}/${MANIFEST_FILE}`),
      ) as BackupManifest;
      const snapshot = manifest.files.find((f) => f.kind === "snapshot") ??
        manifest.files.find((f) => f.kind === "wal")!;
      await Deno.remove(`${copy}/${snapshot.path}`);
      const target = `${root}/from-missing`;
      const cli = await runCli(["restore", "--from", copy, "--data-dir", target]);
      assert.equal(cli.code, 1);
      assert.match(cli.stderr, /is missing/);
      assert.equal(await exists(target), false);
    });

    await t.step(
      "restore refuses a manifest path that escapes the target, even with a valid checksum",
      async () => {
        const copy = await copyBackup("escape");
        const manifest = JSON.parse(
          await Deno.readTextFile(`${copy}/${MANIFEST_FILE}`),
        ) as BackupManifest;
        const { checksum: _old, ...rest } = manifest;
        rest.files[rest.files.length - 1] = {
          ...rest.files[rest.files.length - 1],
          path: "../../escaped.json",
        };
        await Deno.writeTextFile(`${copy}/${MANIFEST_FILE}`, JSON.stringify(sealManifest(rest)));
        const target = `${root}/from-escape`;
        const cli = await runCli(["restore", "--from", copy, "--data-dir", target]);
        assert.equal(cli.code, 1);
        assert.match(cli.stderr, /could escape the target/);
        assert.equal(await exists(target), false);
        assert.equal(await exists(`${root}/escaped.json`), false);
      },
    );

    await t.step("restore refuses an edited manifest", async () => {
      const copy = await copyBackup("edited");
      const manifest = JSON.parse(
        await Deno.readTextFile(`${copy}/${MANIFEST_FILE}`),
      ) as BackupManifest;
      manifest.lastLsn += 1000;
      await Deno.writeTextFile(`${copy}/${MANIFEST_FILE}`, JSON.stringify(manifest));
      const cli = await runCli(["restore", "--from", copy, "--data-dir", `${root}/from-edited`]);
      assert.equal(cli.code, 1);
      assert.match(cli.stderr, /checksum does not match its content/);
    });

    await t.step(
      "a second backup while the lock is held exits 4; --keep prunes but keeps needed bases",
      async () => {
        await Deno.writeTextFile(
          `${backups}/.lock`,
          JSON.stringify({ pid: Deno.pid, hostname: Deno.hostname(), startedMs: Date.now() }),
        );
        const locked = await runCli(["backup", "--to", backups, "--addr", node.addr]);
        assert.equal(locked.code, 4, locked.stderr);
        assert.match(locked.stderr, /another backup is running/);
        await Deno.remove(`${backups}/.lock`);
        // A third backup, incremental on the second; keeping 1 must keep the whole chain.
        const third = await runBackup({
          addr: node.addr,
          toDir: backups,
          incremental: true,
          keep: 1,
        });
        assert.equal(third.kind, "incremental");
        assert.deepEqual(third.pruned, []);
        const fourth = await runBackup({ addr: node.addr, toDir: backups, keep: 1 });
        assert.equal(fourth.kind, "full");
        assert.equal(fourth.pruned.length, 3);
        const left = [];
        for await (const item of Deno.readDir(backups)) left.push(item.name);
        assert.deepEqual(left, [fourth.name]);
      },
    );
  } finally {
    stop.resolve();
    await load?.catch(() => {});
    await node.stop();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("an incremental backup after the node's disk lost records its base holds becomes a full one and says why", async () => {
  const root = await tempDir("shanghai-backup-lost-");
  const dataDir = `${root}/node`;
  let node = await spawnNode({ dataDir });
  try {
    for (let i = 0; i < 100; i++) {
      await (await putJson(node.addr, `a${i}`, `old${i}`)).body?.cancel();
    }
    const base = await runBackup({ addr: node.addr, toDir: `${root}/backups` });
    const baseManifest: BackupManifest = JSON.parse(
      await Deno.readTextFile(`${base.path}/${MANIFEST_FILE}`),
    );
    assert.equal(base.lastLsn, 100);
    assert.equal(baseManifest.lastEntry?.seq, 100, "the manifest names its last entry");
    // The disk loses the last 40 records it had made durable; the node, which never had a
    // peer, keeps its origin and numbers its next writes 61 onwards.
    await node.kill("SIGKILL");
    assert.equal(await loseWalTail(`${dataDir}/wal`, 40), 60);
    node = await spawnNode({ dataDir });
    for (let i = 0; i < 60; i++) {
      await (await putJson(node.addr, `b${i}`, `new${i}`)).body?.cancel();
    }
    const bad = await fetch(
      `http://${node.addr}/v1/admin/backup/sessions?since_lsn=100&last_origin=x&last_seq=1`,
      { method: "POST" },
    );
    assert.equal(bad.status, 400, "an entry named without its HLC is refused");
    assert.equal((await bad.json()).error.code, "bad_query");
    const next = await runBackup({ addr: node.addr, toDir: `${root}/backups`, incremental: true });
    assert.equal(next.kind, "full");
    assert.match(next.fullReason ?? "", /its log changed after the backup/);
    // Restored, it holds what the node holds: the kept old writes and every new one.
    const { values } = await readAll(
      (await runRestore({
        from: next.path,
        dataDir: `${root}/restored`,
      })).dataDir,
    );
    assert.equal(values.size, 120);
    assert.equal(values.get("a59"), "old59");
    assert.equal(values.has("a60"), false);
    for (let i = 0; i < 60; i++) assert.equal(values.get(`b${i}`), `new${i}`);
  } finally {
    await node.stop();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("an incremental backup past retention becomes a full one and says why; CLI exit codes 2 and 3", async () => {
  const root = await tempDir("shanghai-backup-retention-");
  const backups = `${root}/backups`;
  const node = await spawnSmallSegmentNode(`${root}/node`, {
    snapshotEveryBytes: 100000,
    args: ["--retain-bytes", "0"],
  });
  try {
    const put = async (i: number) => {
      await (await putJson(node.addr, `r${i}`, "y".repeat(1000))).body?.cancel();
    };
    for (let i = 0; i < 10; i++) await put(i);
    const base = await runBackup({ addr: node.addr, toDir: backups });
    // Write until retention has removed the segment holding the entry after the base.
    let firstLsn = 0;
    for (let i = 10; i < 2000 && firstLsn <= base.lastLsn + 1; i++) {
      await put(i);
      if (i % 50 === 0) {
        firstLsn = (await fetch(`http://${node.addr}/v1/status`).then((r) => r.json())).firstLsn;
      }
    }
    assert.ok(firstLsn > base.lastLsn + 1, `retention never passed LSN ${base.lastLsn + 1}`);
    const next = await runBackup({ addr: node.addr, toDir: backups, incremental: true });
    assert.equal(next.kind, "full");
    assert.equal(next.base, null);
    assert.match(next.fullReason ?? "", /retention removed LSNs after \d+/);
    const target = `${root}/restored`;
    const restored = await runRestore({ from: next.path, dataDir: target });
    assert.equal(restored.chain.length, 1);
    assert.equal(
      (await readAll(target)).values.size,
      (await fetch(`http://${node.addr}/v1/status`).then((r) => r.json())).keys,
    );

    const usage = await runCli(["backup", "--addr", node.addr]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /Missing --to DIR/);
    const unreachable = await runCli(["backup", "--to", backups, "--addr", "127.0.0.1:1"]);
    assert.equal(unreachable.code, 3);
    assert.match(unreachable.stderr, /Cannot reach node at 127\.0\.0\.1:1/);
  } finally {
    await node.stop();
    await Deno.remove(root, { recursive: true });
  }
});
