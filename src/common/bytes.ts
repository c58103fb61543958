/**
 * Copies `parts` one after another into `into` from `at` (it must have room); returns where
 * the copy ended.
 */
export function copyParts(parts: readonly Uint8Array[], into: Uint8Array, at = 0): number {
  for (const part of parts) {
    into.set(part, at);
    at += part.length;
  }
  return at;
}

/** Concatenates byte arrays into one buffer (a batch becomes one write). */
export function concatBytes(parts: readonly Uint8Array[], totalBytes?: number): Uint8Array {
  const total = totalBytes ?? parts.reduce((sum, p) => sum + p.length, 0);
  const out = new Uint8Array(total);
  copyParts(parts, out);
  return out;
}
