/**
 * Reads a request body without ever holding more than `bytesMax` of it: a declared
 * Content-Length over the limit is refused before reading, a chunked body as soon as it passes.
 *
 * @module
 */
import { concatBytes } from "../../common/bytes.ts";
import { InputError, TooLargeError } from "../../common/errors.ts";

/**
 * A body that breaks off mid-way (the client went away) is bad input, not a server fault.
 * Shared with the admin port's server (server.ts), which reads bodies off its own sockets.
 */
export function brokenBodyError(cause?: unknown): InputError {
  return new InputError(
    "bad_request",
    "Cannot read request body: the client closed the connection before sending all of it",
    { cause },
  );
}

function brokenBody(cause: unknown): never {
  throw brokenBodyError(cause);
}

export async function readBody(
  request: Request,
  bytesMax: number,
  what = "request body",
): Promise<Uint8Array> {
  const declared = request.headers.get("content-length");
  if (declared !== null) {
    const length = Number(declared);
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new InputError("bad_request", `Invalid Content-Length header "${declared}"`);
    }
    if (length > bytesMax) throw new TooLargeError(what, length, bytesMax);
    // A declared length within the limit: the server will not deliver more than it (HTTP/1.1
    // framing), so take the body in one piece. This skips the stream reader, which cost about
    // 5% of a PUT's CPU; the length is still checked after, should a server ever differ.
    if (request.body === null) return new Uint8Array(0);
    const bytes = await request.bytes().catch(brokenBody);
    if (bytes.length > bytesMax) throw new TooLargeError(what, bytes.length, bytesMax);
    return bytes;
  }
  if (request.body === null) return new Uint8Array(0);
  const reader = request.body.getReader();
  const parts: Uint8Array[] = [];
  let total = 0;
  while (true) {
    const { done, value } = await reader.read().catch(brokenBody);
    if (done) break;
    total += value.length;
    if (total > bytesMax) {
      await reader.cancel().catch(() => {});
      throw new TooLargeError(what, total, bytesMax);
    }
    parts.push(value);
  }
  return parts.length === 1 ? parts[0] : concatBytes(parts, total);
}
