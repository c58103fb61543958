import assert from "node:assert/strict";
import { InputError } from "../../common/errors.ts";
import { checkJson, decodeUtf8 } from "./kv_routes.ts";

const quoted = (...inner: number[]) => new Uint8Array([0x22, ...inner, 0x22]);

Deno.test("decodeUtf8 and checkJson accept UTF-8, a real U+FFFD included, and refuse bad bytes", () => {
  const good: [Uint8Array, string][] = [
    [new TextEncoder().encode('{"a": [1, "x"]}'), '{"a": [1, "x"]}'],
    [quoted(0xc3, 0xa9), '"é"'],
    [quoted(0xef, 0xbf, 0xbd), '"\uFFFD"'], // U+FFFD itself is valid UTF-8
    [quoted(0xf0, 0x9f, 0x98, 0x80), '"\u{1F600}"'],
  ];
  for (const [bytes, text] of good) {
    assert.equal(decodeUtf8(bytes), text);
    checkJson(bytes);
  }
  const bad = [
    quoted(0xff), // never valid
    quoted(0xc0, 0xaf), // overlong "/"
    quoted(0xed, 0xa0, 0x80), // a UTF-16 surrogate
    quoted(0xe2, 0x82), // cut short
    quoted(0xef, 0xbf, 0xbd, 0xff), // a real U+FFFD does not hide a bad byte after it
  ];
  for (const bytes of bad) {
    assert.throws(() => decodeUtf8(bytes), TypeError, `bytes ${bytes}`);
    assert.throws(() => checkJson(bytes), (e) => e instanceof InputError && e.code === "bad_json");
  }
  assert.throws(() => checkJson(new TextEncoder().encode("{nope")), InputError);
});
