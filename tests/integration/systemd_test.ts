/**
 * The systemd units in scripts/systemd/ pass `systemd-analyze verify`. verify insists that
 * ExecStart's binary exists, so the test stands a fake `shanghai` in and points the units at
 * it. systemd-analyze comes from Debian's systemd package (.ci/install-tools installs it);
 * when it is missing this test FAILS rather than skip.
 */
import assert from "node:assert/strict";

const UNITS_DIR = new URL("../../scripts/systemd/", import.meta.url).pathname;
const INSTALLED_BINARY = "/usr/local/bin/shanghai";

async function unitFiles(): Promise<string[]> {
  const names: string[] = [];
  for await (const item of Deno.readDir(UNITS_DIR)) {
    if (item.isFile && /\.(service|timer)$/.test(item.name)) names.push(item.name);
  }
  return names.sort();
}

async function verify(dir: string, names: string[]): Promise<{ code: number; output: string }> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("systemd-analyze", {
      args: ["verify", "--man=no", ...names.map((n) => `${dir}/${n}`)],
      env: { SYSTEMD_LOG_COLOR: "0" },
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    throw new Error(
      `systemd-analyze is not installed (${
        (error as Error).message
      }); run .ci/install-tools or apt-get install systemd`,
    );
  }
  const decoder = new TextDecoder();
  return {
    code: out.code,
    output: (decoder.decode(out.stdout) + decoder.decode(out.stderr)).trim(),
  };
}

Deno.test("systemd units pass systemd-analyze verify with no warnings", async () => {
  const names = await unitFiles();
  assert.deepEqual(names, [
    "shanghai-backup-incremental.service",
    "shanghai-backup-incremental.timer",
    "shanghai-backup.service",
    "shanghai-backup.timer",
    "shanghai.service",
  ]);
  const dir = await Deno.makeTempDir({ prefix: "shanghai-systemd-" });
  try {
    const fake = `${dir}/shanghai`;
    await Deno.writeTextFile(fake, "#!/bin/sh\nexit 0\n");
    await Deno.chmod(fake, 0o755);
    for (const name of names) {
      const text = await Deno.readTextFile(`${UNITS_DIR}${name}`);
      if (name.endsWith(".service")) {
        assert.ok(
          text.includes(`ExecStart=${INSTALLED_BINARY} `),
          `${name} runs ${INSTALLED_BINARY}`,
        );
      }
      await Deno.writeTextFile(`${dir}/${name}`, text.replaceAll(INSTALLED_BINARY, fake));
    }
    const result = await verify(dir, names);
    assert.equal(result.code, 0, result.output);
    assert.equal(result.output, "", `systemd-analyze warned:\n${result.output}`);

    // The check has teeth: the unit as shipped, without the stand-in binary, fails.
    const shipped = `${dir}/shipped.service`;
    await Deno.copyFile(`${UNITS_DIR}shanghai.service`, shipped);
    if (!(await Deno.stat(INSTALLED_BINARY).then(() => true, () => false))) {
      const failing = await verify(dir, ["shipped.service"]);
      assert.notEqual(failing.code, 0);
      assert.match(failing.output, /not executable/);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("shanghai.service is sandboxed: dedicated user, read-only system, writable data dir only", async () => {
  const text = await Deno.readTextFile(`${UNITS_DIR}shanghai.service`);
  for (
    const line of [
      "User=shanghai",
      "NoNewPrivileges=yes",
      "ProtectSystem=strict",
      "ReadWritePaths=/var/lib/shanghai",
      "Restart=on-failure",
      "RestartPreventExitStatus=2",
      "KillSignal=SIGTERM",
    ]
  ) assert.ok(text.split("\n").includes(line), `missing ${line}`);
  const timer = await Deno.readTextFile(`${UNITS_DIR}shanghai-backup.timer`);
  assert.ok(timer.includes("Unit=shanghai-backup.service"));
});
