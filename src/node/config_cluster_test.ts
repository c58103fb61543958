import assert from "node:assert/strict";
import { ConfigError } from "../common/errors.ts";
import { resolveConfig } from "./config.ts";

Deno.test("resolveConfig(): cluster timings and detector from flags and SHANGHAI_* variables", () => {
  const defaults = resolveConfig({}, {});
  assert.deepEqual(
    [
      defaults.heartbeatIntervalMs,
      defaults.suspectAfterMs,
      defaults.downAfterMs,
      defaults.failureDetector,
    ],
    [5000, 10_000, 15_000, "swim"],
  );
  const fast = resolveConfig(
    { "heartbeat-interval-ms": "100", "failure-detector": "phi" },
    { SHANGHAI_SUSPECT_AFTER_MS: "300", SHANGHAI_DOWN_AFTER_MS: "500" },
  );
  assert.deepEqual([
    fast.heartbeatIntervalMs,
    fast.suspectAfterMs,
    fast.downAfterMs,
    fast.failureDetector,
  ], [100, 300, 500, "phi"]);
  assert.throws(
    () => resolveConfig({ "suspect-after-ms": "5000" }, {}),
    /suspect-after-ms.*above heartbeat-interval-ms/,
  );
  assert.throws(
    () => resolveConfig({ "down-after-ms": "9000" }, {}),
    /down-after-ms.*above suspect-after-ms/,
  );
  assert.throws(() => resolveConfig({ "failure-detector": "magic" }, {}), ConfigError);
});

Deno.test("resolveConfig(): SHANGHAI_CLUSTER_NODES takes host:port, id@host:port and id@host", () => {
  const config = resolveConfig({}, {
    SHANGHAI_CLUSTER_NODES: "node-1@10.0.1.10,node-2@10.0.1.11:4001,10.0.1.12:4000",
  });
  assert.deepEqual(config.join, ["node-1@10.0.1.10", "node-2@10.0.1.11:4001", "10.0.1.12:4000"]);
  assert.throws(() => resolveConfig({ join: "nohost" }, {}), /Invalid setting join/);
});
