/**
 * `deno lint` and `deno fmt --check` pass on the whole tree, so the test command (and CI, which
 * runs it) catches what `deno task ok` would: a lint failure once slipped past a suite that only
 * ran tests.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);

async function denoPasses(args: string[]): Promise<void> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const decoder = new TextDecoder();
  assert.equal(
    code,
    0,
    `deno ${args.join(" ")} failed:\n${decoder.decode(stdout)}${decoder.decode(stderr)}`,
  );
}

Deno.test("deno lint reports no problems", () => denoPasses(["lint"]));

Deno.test("deno fmt --check finds nothing to format", () => denoPasses(["fmt", "--check"]));
