/** Concatenates byte arrays into one buffer (a batch becomes one write). */
export function concatBytes(parts: readonly Uint8Array[], totalBytes?: number): Uint8Array {
  const total = totalBytes ?? parts.reduce((sum, p) => sum + p.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
