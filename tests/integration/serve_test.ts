import assert from "node:assert/strict";
import { runCli, spawnNode, tempDir } from "../support/node_process.ts";
import { waitFor } from "../support/wait.ts";

const HUGE_PAGES_HINT = "malloc does not ask for huge pages";

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
  } finally {
    const exit = await node.stop();
    assert.equal(exit.code, 0);
  }
  assert.ok(
    !node.logs.some((l) => String(l.msg).startsWith(HUGE_PAGES_HINT)),
    "no hint when the harness sets GLIBC_TUNABLES, as the systemd unit does",
  );
  // Restart on the same directory: the stored id and the write are back.
  const again = await spawnNode({ dataDir });
  try {
    assert.equal(again.nodeId, "n1");
    const got = await fetch(`http://${again.addr}/v1/kv/greeting`);
    assert.deepEqual(await got.json(), { hello: "world" });
  } finally {
    await again.stop();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("serve says how to give malloc huge pages when GLIBC_TUNABLES does not", async () => {
  const dataDir = await tempDir();
  const node = await spawnNode({ dataDir, env: { GLIBC_TUNABLES: "" } });
  try {
    // Logged once the node is ready, just after the line spawnNode waits for.
    const hintLogged = () => node.logs.find((l) => String(l.msg).startsWith(HUGE_PAGES_HINT));
    await waitFor("the node to log the hint", () => hintLogged() !== undefined, 5_000);
    assert.equal((await node.stop()).code, 0);
    const hint = hintLogged()!;
    assert.equal(hint.level, "info");
    assert.match(String(hint.msg), /GLIBC_TUNABLES=glibc\.malloc\.hugetlb=1/);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
