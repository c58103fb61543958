import assert from "node:assert/strict";
import { formatReplicas } from "./replicas.ts";

Deno.test("formatReplicas() prints one line per peer with its ack latency, '-' without one", () => {
  const text = formatReplicas({
    nodeId: "n1",
    lastLsn: 120,
    members: ["n1", "n2", "n3"],
    replicas: [
      {
        peer: "n2",
        status: "replicating",
        leaderOffset: 120,
        followerOffset: 118,
        lag: 2,
        credit: 98,
        entriesPerSec: 1500,
        bytesPerSec: 1_536_000,
        ackLatencyMs: 1.4,
      },
      {
        peer: "n3",
        status: "down",
        leaderOffset: 120,
        followerOffset: 40,
        lag: 80,
        credit: 0,
        entriesPerSec: 0,
        bytesPerSec: 0,
        ackLatencyMs: null,
      },
    ],
  });
  const lines = text.split("\n");
  assert.equal(lines[0], "Node n1: last LSN 120, 3 members");
  assert.match(
    lines[1],
    /^PEER\s+STATUS\s+LEADER OFFSET\s+FOLLOWER OFFSET\s+LAG\s+CREDIT\s+THROUGHPUT\s+ACK$/,
  );
  assert.match(
    lines[2],
    /^n2\s+replicating\s+120\s+118\s+2\s+98\s+1500\/s 1\.5 MiB\/s\s+1\.40 ms$/,
  );
  assert.match(lines[3], /^n3\s+down\s+120\s+40\s+80\s+0\s+0\/s .+\/s\s+-$/);
});

Deno.test("formatReplicas() says so when the node has no peer", () => {
  assert.equal(
    formatReplicas({ nodeId: "n1", lastLsn: 5, members: ["n1"], replicas: [] }),
    "Node n1: last LSN 5, 1 members\nNo peers: this node replicates to no one.",
  );
});
