import assert from "node:assert/strict";
import { ConfigError } from "../common/errors.ts";
import { parseHostPort, readConfigFile, resolveConfig } from "./config.ts";

Deno.test("resolveConfig(): defaults give one node on ./data with the seed's ports", () => {
  const config = resolveConfig({}, {});
  assert.equal(config.port, 4000);
  assert.equal(config.adminPort, 9090);
  assert.equal(config.dataDir, "./data");
  assert.equal(config.nodeId, undefined);
  assert.deepEqual(config.join, []);
  assert.equal(config.batchEntriesMax, 100);
  assert.equal(config.segmentBytes, 64 * 1024 * 1024);
  assert.equal(config.tombstoneGraceMs, 60_000);
  assert.equal(config.tombstoneSweepMs, 10_000);
  assert.equal(config.idlePollMicros, 0);
  assert.equal(resolveConfig({}, { SHANGHAI_IDLE_POLL_US: "1000" }).idlePollMicros, 1_000);
  assert.equal(resolveConfig({ "idle-poll-us": "250" }, {}).idlePollMicros, 250);
  assert.equal(config.prefaultSlabs, 8);
  assert.equal(resolveConfig({}, { SHANGHAI_PREFAULT_SLABS: "0" }).prefaultSlabs, 0);
  assert.throws(
    () => resolveConfig({ "prefault-slabs": "257" }, {}),
    /prefault-slabs \(from --prefault-slabs\): 257 is outside 0 to 256/,
  );
  assert.equal(config.snapshotEveryBytes, 256 * 1024 * 1024);
  assert.equal(config.snapshotWalPercent, 100);
  assert.equal(
    resolveConfig({}, { SHANGHAI_SNAPSHOT_WAL_PERCENT: "0" }).snapshotWalPercent,
    0,
  );
  assert.throws(
    () => resolveConfig({ "snapshot-wal-percent": "-5" }, {}),
    /snapshot-wal-percent \(from --snapshot-wal-percent\)/,
  );
});

Deno.test("resolveConfig(): flags win over environment, environment over file", () => {
  const file = { adminPort: 7000, port: 7001, dataDir: "/from/file", nodeId: "file-node" };
  const env = {
    SHANGHAI_ADMIN_PORT: "8000",
    SHANGHAI_DATA_DIR: "/from/env",
    SHANGHAI_CLUSTER_NODES: "a:1, b:2",
  };
  const config = resolveConfig({ "admin-port": "9000" }, env, file);
  assert.equal(config.adminPort, 9000);
  assert.equal(config.dataDir, "/from/env");
  assert.equal(config.port, 7001);
  assert.equal(config.nodeId, "file-node");
  assert.deepEqual(config.join, ["a:1", "b:2"]);
});

Deno.test("resolveConfig(): a bad value names the setting and where it came from", () => {
  const cases: [Record<string, string>, Record<string, string>, RegExp][] = [
    [{ port: "70000" }, {}, /Invalid setting port \(from --port\): 70000 is outside 0 to 65535/],
    [
      {},
      { SHANGHAI_ADMIN_PORT: "http" },
      /admin-port \(from SHANGHAI_ADMIN_PORT\): expected a whole number/,
    ],
    [{ "log-level": "loud" }, {}, /log-level .*expected one of debug, info, warn, error/],
    [{ "node-id": "bad id!" }, {}, /Invalid setting node-id/],
    [{ join: "nohost" }, {}, /Invalid setting join: "nohost" is not host:port/],
    [{ "batch-bytes-max": "65536" }, {}, /batch-bytes-max: 65536 cannot hold one value/],
    [
      {},
      { SHANGHAI_TOMBSTONE_SWEEP_MS: "50" },
      /tombstone-sweep-ms \(from SHANGHAI_TOMBSTONE_SWEEP_MS\): 50 is outside 100 to/,
    ],
    [{ "tombstone-grace-ms": "-1" }, {}, /Invalid setting tombstone-grace-ms/],
    [
      { "idle-poll-us": "100001" },
      {},
      /idle-poll-us \(from --idle-poll-us\): 100001 is outside 0 to/,
    ],
  ];
  for (const [flags, env, pattern] of cases) {
    assert.throws(
      () => resolveConfig(flags, env),
      (e: unknown) => e instanceof ConfigError && pattern.test(e.message),
      String(pattern),
    );
  }
});

Deno.test("readConfigFile() refuses unknown keys and invalid JSON", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/bad.json`, "{ nope");
    await assert.rejects(() => readConfigFile(`${dir}/bad.json`), /is not valid JSON/);
    await Deno.writeTextFile(`${dir}/unknown.json`, '{"colour": "blue"}');
    await assert.rejects(
      () => readConfigFile(`${dir}/unknown.json`),
      /Invalid setting colour: unknown setting/,
    );
    await Deno.writeTextFile(`${dir}/ok.json`, '{"adminPort": 9999, "log-format": "json"}');
    assert.deepEqual(await readConfigFile(`${dir}/ok.json`), {
      adminPort: 9999,
      logFormat: "json",
    });
    await assert.rejects(() => readConfigFile(`${dir}/missing.json`), /cannot read/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseHostPort() reads IPv4, names and bracketed IPv6", () => {
  assert.deepEqual(parseHostPort("127.0.0.1:4000", "x"), { host: "127.0.0.1", port: 4000 });
  assert.deepEqual(parseHostPort("[::1]:9", "x"), { host: "::1", port: 9 });
  assert.throws(() => parseHostPort("host:0", "x"), ConfigError);
});
