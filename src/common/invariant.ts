/** A broken invariant is a programmer error: only the process entry catches it. */
export class InvariantError extends Error {
  override name = "InvariantError";
}

/** Throws {@link InvariantError} with `message` when `condition` is false. */
export function invariant(condition: unknown, message: string): asserts condition {
  if (!condition) throw new InvariantError(message);
}
