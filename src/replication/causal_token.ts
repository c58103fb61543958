/**
 * Causal tokens: a version vector as text, `origin:seq,origin:seq` (origins never hold ':' or
 * ','). Writes and reads return one; a read with `consistency=causal` and a token waits until
 * the node's version vector covers it.
 *
 * @module
 */
import type { VersionVector } from "../common/entry.ts";
import { InputError } from "../common/errors.ts";
import { ORIGIN_PATTERN } from "../common/origin.ts";

const TOKEN_ORIGINS_MAX = 1000;
const TOKEN_PART = new RegExp(`^(${ORIGIN_PATTERN}):(\\d{1,15})$`);

/** The token for a version vector (origins sorted, so equal vectors give equal tokens). */
export function encodeToken(vv: VersionVector): string {
  return Object.keys(vv).sort().filter((o) => vv[o] > 0).map((o) => `${o}:${vv[o]}`).join(",");
}

/** Parses a token; a malformed one is an InputError (400). */
export function decodeToken(token: string): VersionVector {
  const vv: VersionVector = {};
  if (token.trim() === "") return vv;
  const parts = token.split(",");
  if (parts.length > TOKEN_ORIGINS_MAX) {
    throw new InputError(
      "bad_query",
      `Invalid causal token: more than ${TOKEN_ORIGINS_MAX} origins`,
    );
  }
  for (const part of parts) {
    const match = TOKEN_PART.exec(part.trim());
    if (!match) {
      throw new InputError(
        "bad_query",
        `Invalid causal token part ${JSON.stringify(part)}: expected origin:seq`,
      );
    }
    vv[match[1]] = Math.max(vv[match[1]] ?? 0, Number(match[2]));
  }
  return vv;
}
