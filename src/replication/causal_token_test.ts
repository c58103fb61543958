import assert from "node:assert/strict";
import { decodeToken, encodeToken } from "./causal_token.ts";

Deno.test("causal tokens round-trip and refuse malformed text", () => {
  const vv = { n2: 7, n1: 3 };
  assert.equal(encodeToken(vv), "n1:3,n2:7");
  assert.deepEqual(decodeToken(encodeToken(vv)), { n1: 3, n2: 7 });
  assert.deepEqual(decodeToken(""), {});
  assert.deepEqual(decodeToken("n1~0a1b2c3d:4,n1:2"), { "n1~0a1b2c3d": 4, n1: 2 });
  for (
    const bad of [
      "n1",
      "n1:x",
      ":3",
      "n1:3,,",
      "n 1:3",
      "n1~:3",
      "n1~xyz:3",
      "n1~0a1b2c3d~0a1b2c3d:3",
    ]
  ) {
    assert.throws(() => decodeToken(bad), /Invalid causal token/, bad);
  }
});
