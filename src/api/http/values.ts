import { encodeBase64 } from "./base64.ts";

const utf8 = new TextDecoder();

/**
 * A stored value inside a JSON document: JSON as JSON, anything else as base64. A value stored
 * as JSON that does not parse (the HTTP API checks every JSON body, but an embedding program's
 * `Store.put` does not) goes out as base64 too, rather than failing the whole answer.
 */
export function encodeValue(
  value: Uint8Array,
  contentType: string,
): { value: unknown } | { valueBase64: string } {
  if (contentType === "application/json") {
    try {
      return { value: JSON.parse(utf8.decode(value)) };
    } catch {
      // Not JSON after all: its bytes as they are.
    }
  }
  return { valueBase64: encodeBase64(value) };
}
