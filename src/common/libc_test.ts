import assert from "node:assert/strict";
import { openLibc } from "./libc.ts";

Deno.test("openLibc() loads the C library where it can, and says why where it cannot", () => {
  const symbols = { getpid: { parameters: [], result: "i32" } } as const;
  const missing = openLibc(symbols, ["libshanghai-missing.so.0", "libshanghai-missing.so"]);
  assert.ok("problem" in missing);
  if (Deno.build.os !== "linux") {
    assert.match(missing.problem, /not on Linux/);
    return;
  }
  assert.match(
    missing.problem,
    /cannot load libc \(libshanghai-missing\.so\.0: .*; libshanghai-missing\.so: /,
  );
  const libc = openLibc(symbols);
  assert.ok("symbols" in libc, "problem" in libc ? libc.problem : "");
  assert.equal(libc.symbols.getpid(), Deno.pid);
});
