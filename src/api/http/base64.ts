/**
 * Base64 (RFC 4648, padded) of a value's bytes, for the JSON views that carry it as
 * `valueBase64` (GET of a key as JSON, lists, the log and the change feed).
 *
 * V8's own `Uint8Array.prototype.toBase64`: 0.16 µs per KiB here. The first version built a binary
 * string for `btoa` by spreading the bytes into `String.fromCharCode`, 22 µs per KiB, and that was
 * a third of a replica's CPU while it served the change feed to a reader (docs/BENCHMARKS.md,
 * session 28).
 *
 * @module
 */

interface WithToBase64 {
  toBase64(): string;
}

/** Base64 of exactly the bytes `bytes` views (a view into a larger buffer encodes only itself). */
export function encodeBase64(bytes: Uint8Array): string {
  return (bytes as Uint8Array & WithToBase64).toBase64();
}
