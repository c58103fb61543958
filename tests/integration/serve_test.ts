import assert from "node:assert/strict";
import { runCli, spawnNode, tempDir } from "../support/node_process.ts";

Deno.test("serve answers health, ready and status, and stops cleanly on SIGTERM", async () => {
  const dataDir = await tempDir();
  const node = await spawnNode({ dataDir, args: ["--node-id", "n1"] });
  try {
    assert.equal((await fetch(`http://${node.addr}/health`).then((r) => r.json())).status, "ok");
    const ready = await fetch(`http://${node.addr}/ready`);
    assert.equal(ready.status, 200);
    await ready.body?.cancel();
    const put = await fetch(`http://${node.addr}/v1/kv/greeting`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ hello: "world" }),
    });
    assert.equal(put.status, 200);
    assert.equal((await put.json()).lsn, 1);
    const status = await runCli(["status", "--addr", node.addr, "--json"]);
    assert.equal(status.code, 0, status.stderr);
    const body = JSON.parse(status.stdout);
    assert.equal(body.nodeId, "n1");
    assert.equal(body.lastLsn, 1);
    // Off by default (src/common/limits.ts says why).
    assert.equal(body.idlePolling, false);
  } finally {
    const exit = await node.stop();
    assert.equal(exit.code, 0);
  }
  // Restart on the same directory: the stored id and the write are back.
  const again = await spawnNode({ dataDir, args: ["--idle-poll-us", "1000"] });
  try {
    assert.equal(again.nodeId, "n1");
    const status = await fetch(`http://${again.addr}/v1/status`).then((r) => r.json());
    // Asked for, it runs where it can (Linux, FFI allowed, as the harness runs nodes).
    assert.equal(status.idlePolling, Deno.build.os === "linux");
    const got = await fetch(`http://${again.addr}/v1/kv/greeting`);
    assert.deepEqual(await got.json(), { hello: "world" });
  } finally {
    await again.stop();
    await Deno.remove(dataDir, { recursive: true });
  }
});
