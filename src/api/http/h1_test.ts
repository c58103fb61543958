import assert from "node:assert/strict";
import { HTTP_HEAD_BYTES_MAX, HTTP_HEADERS_MAX } from "../../common/limits.ts";
import { ChunkedDecoder, headerOf, HttpParseError, parseRequestHead } from "./h1.ts";

const bytes = (text: string) => new TextEncoder().encode(text);
const parse = (text: string) => {
  const b = bytes(text);
  return parseRequestHead(b, 0, b.length);
};
const refused = (text: string, status: number) =>
  assert.throws(() => parse(text), (e) => e instanceof HttpParseError && e.status === status);

Deno.test("parseRequestHead reads a request line, headers and framing", () => {
  const text = "PUT /v1/kv/a?ack=all HTTP/1.1\r\nHost: x\r\nContent-Type:  application/json \r\n" +
    "Content-Length: 5\r\n\r\nhello";
  const head = parse(text)!;
  assert.equal(head.method, "PUT");
  assert.equal(head.target, "/v1/kv/a?ack=all");
  assert.equal(head.minorVersion, 1);
  assert.equal(head.contentLength, 5);
  assert.equal(head.keepAlive, true);
  assert.equal(head.expectContinue, false);
  assert.equal(headerOf(head, "content-type"), "application/json");
  assert.equal(head.headBytes, text.length - 5, "the head ends at the blank line");
});

Deno.test("parseRequestHead waits for the blank line and skips CRLFs before a request", () => {
  const text = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  for (let cut = 0; cut < text.length; cut++) {
    assert.equal(parse(text.slice(0, cut)), undefined, `cut at ${cut}`);
  }
  const head = parse(`\r\n${text}`)!;
  assert.equal(head.headBytes, text.length + 2);
  assert.equal(head.contentLength, 0);
  // A request with no header fields at all.
  assert.equal(parse("GET / HTTP/1.1\r\n\r\n")!.headers.length, 0);
});

Deno.test("parseRequestHead reads a byte over 0x7f as one character", () => {
  const b = new Uint8Array([...bytes("GET / HTTP/1.1\r\nX: caf"), 0xe9, ...bytes("\r\n\r\n")]);
  assert.equal(headerOf(parseRequestHead(b, 0, b.length)!, "x"), "caf\u00e9");
  // Bytes that are valid UTF-8 are still one character each: a two-byte sequence, and the
  // three bytes that encode U+FFFD.
  for (
    const [tail, read] of [[[0xc3, 0xa9], "\u00c3\u00a9"], [
      [0xef, 0xbf, 0xbd],
      "\u00ef\u00bf\u00bd",
    ]] as const
  ) {
    const c = new Uint8Array([...bytes("GET / HTTP/1.1\r\nX: "), ...tail, ...bytes("\r\n\r\n")]);
    assert.equal(headerOf(parseRequestHead(c, 0, c.length)!, "x"), read);
  }
});

Deno.test("parseRequestHead decides keep-alive by version and Connection", () => {
  assert.equal(parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")!.keepAlive, false);
  assert.equal(parse("GET / HTTP/1.0\r\n\r\n")!.keepAlive, false);
  assert.equal(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")!.keepAlive, true);
  assert.equal(parse("GET / HTTP/1.1\r\nConnection: te, close\r\n\r\n")!.keepAlive, false);
});

Deno.test("parseRequestHead reads chunked framing and Expect: 100-continue", () => {
  const head = parse(
    "POST /v1/log HTTP/1.1\r\nTransfer-Encoding: Chunked\r\nExpect: 100-continue\r\n\r\n",
  )!;
  assert.equal(head.contentLength, -1);
  assert.equal(head.expectContinue, true);
  // The same length repeated is one length.
  assert.equal(parse("PUT / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n")!.contentLength, 3);
});

Deno.test("parseRequestHead refuses what could be read two ways", () => {
  refused("PUT / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
  refused("PUT / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400);
  refused("PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400);
  refused("PUT / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", 400);
  refused("PUT / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
  refused("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501);
  refused("PUT / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
  refused("GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400);
  refused("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400);
  refused("GET / HTTP/1.1\r\n: x\r\n\r\n", 400);
  refused("GET / HTTP/1.1\r\nX: a\nb: c\r\n\r\n", 400);
  refused("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 400);
  refused("GET / HTTP/1.1\r\nExpect: something\r\n\r\n", 417);
});

Deno.test("parseRequestHead refuses malformed request lines and versions", () => {
  refused("GET /\r\n\r\n", 400);
  refused("GET  / HTTP/1.1\r\n\r\n", 400);
  refused("G(T / HTTP/1.1\r\n\r\n", 400);
  refused("GET x HTTP/1.1\r\n\r\n", 400);
  refused("GET / HTTP/2.0\r\n\r\n", 505);
  refused("GET / HTTQ/1.1\r\n\r\n", 400);
  assert.equal(parse("GET http://h:1/v1/status HTTP/1.1\r\n\r\n")!.target, "http://h:1/v1/status");
});

Deno.test("parseRequestHead bounds the head's bytes and fields", () => {
  refused(`GET / HTTP/1.1\r\nX: ${"a".repeat(HTTP_HEAD_BYTES_MAX)}`, 431);
  refused(`GET / HTTP/1.1\r\nX: ${"a".repeat(HTTP_HEAD_BYTES_MAX)}\r\n\r\n`, 431);
  const many = Array.from({ length: HTTP_HEADERS_MAX + 1 }, (_, i) => `X-${i}: 1\r\n`).join("");
  refused(`GET / HTTP/1.1\r\n${many}\r\n`, 431);
  const enough = Array.from({ length: HTTP_HEADERS_MAX }, (_, i) => `X-${i}: 1\r\n`).join("");
  assert.equal(parse(`GET / HTTP/1.1\r\n${enough}\r\n`)!.headers.length, HTTP_HEADERS_MAX);
});

Deno.test("ChunkedDecoder decodes a body fed one byte at a time and stops at its end", () => {
  const text = "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nGET / HTTP/1.1";
  const b = bytes(text);
  const decoder = new ChunkedDecoder(1024);
  let at = 0;
  let end = 0;
  while (!decoder.done && end < b.length) {
    end++;
    at += decoder.feed(b, at, end);
  }
  assert.ok(decoder.done);
  assert.equal(new TextDecoder().decode(decoder.body()), "hello world");
  assert.equal(
    new TextDecoder().decode(b.subarray(at)),
    "GET / HTTP/1.1",
    "the next request stays",
  );
});

Deno.test("ChunkedDecoder refuses oversized and malformed bodies", () => {
  const feed = (text: string, bytesMax = 8) => {
    const b = bytes(text);
    new ChunkedDecoder(bytesMax).feed(b, 0, b.length);
  };
  const status = (n: number) => (e: unknown) => e instanceof HttpParseError && e.status === n;
  assert.throws(() => feed("9\r\n123456789\r\n0\r\n\r\n"), status(413));
  assert.throws(() => feed("5\r\n12345\r\n4\r\n1234\r\n0\r\n\r\n"), status(413));
  assert.throws(() => feed("zz\r\n"), status(400));
  assert.throws(() => feed("3\r\n12345\r\n"), status(400));
  assert.throws(() => feed("3\n123\r\n"), status(400));
  assert.throws(() => feed("1".repeat(2000)), status(400));
  assert.throws(() => feed("123456789\r\n", Number.MAX_SAFE_INTEGER), status(400));
});
