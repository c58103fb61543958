/**
 * A partition between real processes: n3 runs in its own network namespace and its link is
 * cut. The majority keeps taking `ack=quorum` writes, n3's quorum writes fail with a 504 that
 * says one durable copy exists, and after healing every node converges (n3's write kept).
 * Needs root and iproute2 for the namespace; elsewhere the test is reported as ignored.
 */
import assert from "node:assert/strict";
import { waitForNodes } from "../support/wait.ts";
import { createNetnsLink, fetchInNetns, netnsAvailable } from "../support/netns.ts";
import { type NodeProcess, spawnNode, tempDir } from "../support/node_process.ts";
import { digestsEqual, getJson, replicating } from "../support/node_http.ts";
import { FAST_MEMBERSHIP_ARGS } from "../support/process_cluster.ts";

async function put(node: NodeProcess, key: string, ack: string): Promise<number> {
  const response = await fetch(`http://${node.addr}/v1/kv/${key}?ack=${ack}`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ key }),
  });
  await response.body?.cancel();
  return response.status;
}

Deno.test({
  name:
    "real processes: a partition cuts one node off; the majority takes quorum writes, the minority gets 504s, all converge after healing",
  ignore: !(await netnsAvailable()),
  fn: async () => {
    const link = await createNetnsLink();
    const dirs = [
      await tempDir("shanghai-part-n1-"),
      await tempDir("shanghai-part-n2-"),
      await tempDir("shanghai-part-n3-"),
    ];
    const nodes: NodeProcess[] = [];
    try {
      const n1 = await spawnNode({
        dataDir: dirs[0],
        host: link.hostIp,
        args: ["--node-id", "n1", "--ack-timeout-ms", "1500", ...FAST_MEMBERSHIP_ARGS],
      });
      nodes.push(n1);
      const join = ["--join", `${link.hostIp}:${n1.nodePort}`];
      const n2 = await spawnNode({
        dataDir: dirs[1],
        host: link.hostIp,
        args: ["--node-id", "n2", "--ack-timeout-ms", "1500", ...FAST_MEMBERSHIP_ARGS, ...join],
      });
      nodes.push(n2);
      const n3 = await spawnNode({
        dataDir: dirs[2],
        host: link.nsIp,
        netns: link.ns,
        args: ["--node-id", "n3", "--ack-timeout-ms", "1500", ...FAST_MEMBERSHIP_ARGS, ...join],
      });
      nodes.push(n3);
      await waitForNodes("3 nodes replicating", () => replicating(nodes));
      assert.equal(await put(n3, "before", "all"), 200);

      await link.cut();
      for (let i = 0; i < 20; i++) {
        assert.equal(await put(i % 2 ? n1 : n2, `major${i}`, "quorum"), 200);
      }
      const minority = await fetchInNetns(link.ns, `http://${n3.addr}/v1/kv/minor?ack=quorum`, {
        method: "PUT",
        body: '"from n3"',
      });
      assert.equal(minority.status, 504, minority.body);
      const body = JSON.parse(minority.body);
      assert.equal(body.error.code, "timeout");
      assert.equal(body.copies, 1);
      assert.equal(body.copiesNeeded, 2);
      assert.equal(body.members, 3);

      await link.heal();
      await waitForNodes("all three to converge", () => digestsEqual(nodes), 60_000);
      // The minority's write was kept, not rolled back, and reached everyone.
      const minor = await fetch(`http://${n1.addr}/v1/kv/minor`);
      assert.equal(minor.status, 200);
      assert.equal(await minor.json(), "from n3");
      assert.equal((await getJson(n3, "/v1/digest")).keys, 22);
    } finally {
      for (const n of nodes) await n.kill("SIGKILL");
      await link.destroy();
      for (const dir of dirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
