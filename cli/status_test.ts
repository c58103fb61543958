import assert from "node:assert/strict";
import { formatCluster, formatStatus } from "./status.ts";

Deno.test("formatCluster() prints seed 002's view: cluster state and one line per member", () => {
  const text = formatCluster({
    state: "Degraded",
    members: [
      { id: "node-1", state: "up", address: "10.0.1.10:4000", lastSeenAgoMs: 0, self: true },
      { id: "node-2", state: "up", address: "10.0.1.11:4000", lastSeenAgoMs: 45, self: false },
      {
        id: "node-3",
        state: "down",
        address: "10.0.1.12:4000",
        lastSeenAgoMs: 16_200,
        self: false,
      },
      { id: "node-4", state: "left", address: "10.0.1.13:4000", lastSeenAgoMs: null, self: false },
    ],
  });
  assert.match(text, /Cluster State: Degraded/);
  assert.match(text, /✓ node-1 - up +\(this node\) {2}10\.0\.1\.10:4000/);
  assert.match(text, /✓ node-2 - up +\(heartbeat: 45ms ago\)/);
  assert.match(text, /✗ node-3 - down +\(heartbeat: 16\.2s ago\)/);
  assert.match(text, /- node-4 - left +\(left the cluster\)/);
});

Deno.test("formatStatus() counts live keys, and tombstones only when there are some", () => {
  const base = {
    nodeId: "n1",
    ready: true,
    uptimeMs: 4_000,
    keys: 100,
    segments: 1,
    bytesOnDisk: 2048,
  };
  assert.match(formatStatus({ ...base, tombstones: 0 }), /^Keys: +100$/m);
  assert.match(
    formatStatus({ ...base, tombstones: 7 }),
    /^Keys: +100 \(and 7 deleted, kept as tombstones\)$/m,
  );
  assert.match(formatStatus({ ...base, idlePolling: true }), /^Idle polling: +on$/m);
  assert.match(formatStatus({ ...base, idlePolling: false }), /^Idle polling: +off$/m);
  assert.doesNotMatch(formatStatus(base), /Idle polling/);
});
