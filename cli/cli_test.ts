import assert from "node:assert/strict";
import { run } from "./mod.ts";
import type { CliIo } from "./io.ts";

function captureIo(
  env: Record<string, string> = {},
): CliIo & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (t) => stdout.push(t), err: (t) => stderr.push(t), env };
}

Deno.test("shanghai --help lists every command; no command is a usage error", async () => {
  const io = captureIo();
  assert.equal(await run(["--help"], io), 0);
  assert.match(io.stdout.join("\n"), /serve\s+Run a node/);
  assert.match(io.stdout.join("\n"), /status\s+Show/);
  assert.equal(await run([], captureIo()), 2);
});

Deno.test("every subcommand answers --help with exit 0", async () => {
  for (const command of [["serve"], ["status"]]) {
    const io = captureIo();
    assert.equal(await run([...command, "--help"], io), 0, command.join(" "));
    assert.match(io.stdout.join("\n"), /^Usage: shanghai /);
  }
});

Deno.test("unknown commands and flags are one-line usage errors with exit 2", async () => {
  const io = captureIo();
  assert.equal(await run(["frobnicate"], io), 2);
  assert.match(io.stderr[0], /Unknown command "frobnicate"/);
  const flags = captureIo();
  assert.equal(await run(["status", "--bogus"], flags), 2);
  assert.equal(flags.stderr.length, 1);
  assert.match(flags.stderr[0], /^shanghai status: .*bogus/);
});

Deno.test("serve with a bad setting exits 2 naming it, before touching the disk", async () => {
  const io = captureIo({ SHANGHAI_PORT: "99999" });
  assert.equal(await run(["serve", "--data-dir", "/nonexistent/never-created"], io), 2);
  assert.match(io.stderr[0], /Invalid setting port \(from SHANGHAI_PORT\)/);
});

Deno.test("status against a node that is not there exits 3", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const io = captureIo();
  assert.equal(await run(["status", "--addr", `127.0.0.1:${port}`], io), 3);
  assert.match(io.stderr[0], /Cannot reach node at 127\.0\.0\.1:\d+/);
  assert.equal(await run(["status", "--addr", "not an addr"], captureIo()), 2);
});
