import assert from "node:assert/strict";
import { isRuntimeDownloadFailure, RELEASE_TARGETS } from "./compile.ts";

Deno.test("compile tells a runtime download failure from a build failure", () => {
  const offline = `error: Writing deno compile executable to temporary file 'dist/shanghai.tmp-1'
Caused by:
    0: Setting up base binary.
    1: error sending request for url (https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip): client error (Connect): dns error: failed to lookup address information: Name or service not known`;
  assert.equal(isRuntimeDownloadFailure(offline), true);
  const typeError = `error: TS2322 [ERROR]: Type 'string' is not assignable to type 'number'.
    at file:///work/main.ts:3:7`;
  assert.equal(isRuntimeDownloadFailure(typeError), false);
});

Deno.test("the release matrix covers linux, macOS and Windows on x64 and arm64", () => {
  assert.ok(RELEASE_TARGETS.includes("x86_64-unknown-linux-gnu"));
  assert.ok(RELEASE_TARGETS.includes("aarch64-unknown-linux-gnu"));
  assert.ok(RELEASE_TARGETS.some((t) => t.includes("apple-darwin")));
  assert.ok(RELEASE_TARGETS.some((t) => t.includes("windows")));
});
