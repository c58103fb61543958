import assert from "node:assert/strict";
import { NODE_GLIBC_TUNABLES, nodeGlibcTunables } from "./glibc_tunables.ts";

Deno.test("nodeGlibcTunables() adds the node's tunable and keeps a caller's own choice", () => {
  assert.equal(nodeGlibcTunables(undefined), NODE_GLIBC_TUNABLES);
  assert.equal(nodeGlibcTunables(" "), NODE_GLIBC_TUNABLES);
  assert.equal(
    nodeGlibcTunables("glibc.malloc.arena_max=2"),
    `glibc.malloc.arena_max=2:${NODE_GLIBC_TUNABLES}`,
  );
  assert.equal(nodeGlibcTunables("glibc.malloc.hugetlb=0"), "glibc.malloc.hugetlb=0");
  assert.equal(
    nodeGlibcTunables("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0"),
    "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0",
  );
});

Deno.test("the systemd unit, `deno task start` and the test harness run a node with the same glibc tunable", async () => {
  const read = (path: string) => Deno.readTextFile(new URL(`../../${path}`, import.meta.url));
  const unit = await read("scripts/systemd/shanghai.service");
  assert.ok(
    unit.split("\n").includes(`Environment=GLIBC_TUNABLES=${NODE_GLIBC_TUNABLES}`),
    "shanghai.service sets GLIBC_TUNABLES",
  );
  const config = JSON.parse(await read("deno.json"));
  assert.ok(
    (config.tasks.start as string).startsWith(`GLIBC_TUNABLES=${NODE_GLIBC_TUNABLES} `),
    "deno.json's start task sets GLIBC_TUNABLES",
  );
  assert.match(await read("tests/support/node_process.ts"), /nodeGlibcTunables\(/);
});
