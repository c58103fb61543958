import assert from "node:assert/strict";
import { encodeBase64 } from "./base64.ts";
import { Random } from "../../common/random.ts";

/** The reference: btoa over a binary string, one character per byte. */
function reference(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

Deno.test("encodeBase64 matches btoa for every length and padding, and encodes only the view", () => {
  const random = new Random(2801);
  const backing = new Uint8Array(70_000);
  for (let i = 0; i < backing.length; i++) backing[i] = random.int(256);
  for (const length of [0, 1, 2, 3, 4, 5, 1023, 1024, 1025, 3000, 65_536]) {
    for (const offset of [0, 1, 7]) {
      const view = backing.subarray(offset, offset + length);
      assert.equal(encodeBase64(view), reference(view), `length ${length} at offset ${offset}`);
    }
  }
  assert.equal(encodeBase64(new Uint8Array([0xfb, 0xff])), "+/8=");
  assert.equal(encodeBase64(new Uint8Array([104, 105])), "aGk=");
});
