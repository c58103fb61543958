import assert from "node:assert/strict";
import { isNodeId, isOrigin, newOrigin, originNode } from "./origin.ts";

Deno.test("origins name their node: a bare node id is its own origin, a tagged one names the id before '~'", () => {
  assert.equal(originNode("n1"), "n1");
  const origin = newOrigin("node-a");
  assert.ok(isOrigin(origin) && !isNodeId(origin), origin);
  assert.match(origin, /^node-a~[0-9a-f]{8}$/);
  assert.equal(originNode(origin), "node-a");
  // Remembered answers stay right, also past the bound on what is remembered.
  const many = Array.from({ length: 3000 }, (_, i) => newOrigin(`n${i % 7}`));
  for (let round = 0; round < 2; round++) {
    many.forEach((o, i) => assert.equal(originNode(o), `n${i % 7}`, o));
  }
  assert.equal(originNode(origin), "node-a");
});
