import { encodeBase64 } from "./base64.ts";

const utf8 = new TextDecoder();

/** A stored value inside a JSON document: JSON as JSON, anything else as base64. */
export function encodeValue(
  value: Uint8Array,
  contentType: string,
): { value: unknown } | { valueBase64: string } {
  if (contentType === "application/json") return { value: JSON.parse(utf8.decode(value)) };
  return { valueBase64: encodeBase64(value) };
}
