import assert from "node:assert/strict";
import { compileArgs } from "../../scripts/compile.ts";
import { NODE_V8_FLAGS, v8FlagsArgument } from "./v8_flags.ts";

Deno.test("the binary, `deno task start` and the test harness run a node with the same V8 flags", async () => {
  assert.ok(NODE_V8_FLAGS.length > 0);
  assert.ok(compileArgs("x86_64-unknown-linux-gnu", "dist/shanghai").includes(v8FlagsArgument()));
  const config = JSON.parse(await Deno.readTextFile(new URL("../../deno.json", import.meta.url)));
  assert.ok(
    (config.tasks.start as string).split(" ").includes(v8FlagsArgument()),
    `deno.json's start task must pass ${v8FlagsArgument()}`,
  );
  const harness = await Deno.readTextFile(
    new URL("../../tests/support/node_process.ts", import.meta.url),
  );
  assert.match(harness, /v8FlagsArgument\(\)/);
});

Deno.test("V8 accepts the node's flags (it exits 1 on a flag it does not know)", async () => {
  const result = await new Deno.Command(Deno.execPath(), {
    args: ["eval", v8FlagsArgument(), "console.log('ok')"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(result.code, 0, new TextDecoder().decode(result.stderr));
  assert.equal(new TextDecoder().decode(result.stdout).trim(), "ok");
  const unknown = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--v8-flags=--no-such-flag-here", "1"],
    stdout: "null",
    stderr: "null",
  }).output();
  assert.equal(unknown.code, 1);
});
