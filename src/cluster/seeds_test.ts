import assert from "node:assert/strict";
import { ConfigError } from "../common/errors.ts";
import { parseSeed } from "./seeds.ts";

Deno.test("parseSeed() accepts host:port, id@host:port and seed 002's id@host", () => {
  assert.deepEqual(parseSeed("127.0.0.1:4001"), { address: "127.0.0.1:4001" });
  assert.deepEqual(parseSeed("node-1@10.0.1.10"), { id: "node-1", address: "10.0.1.10:4000" });
  assert.deepEqual(parseSeed(" node-2@host.example:4100 "), {
    id: "node-2",
    address: "host.example:4100",
  });
  assert.deepEqual(parseSeed("[::1]:4000"), { address: "[::1]:4000" });
  for (const bad of ["", "host", "a@b@c", "h:0", "h:99999", "@h:1", "h:p"]) {
    assert.throws(() => parseSeed(bad), ConfigError, bad);
  }
});
