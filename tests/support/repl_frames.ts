/**
 * Replication frame bodies for tests that feed a node or a parser what a peer could send.
 * A builder starts from a well-formed body and takes the fields a case changes, so a table of
 * malformed frames shows only what each one breaks.
 *
 * @module
 */
import type { BatchFrame } from "../../src/replication/frames.ts";

/** A `repl.batch` body as a leader sends it; `lastLsn` may be left out. */
export type BatchBody = Omit<BatchFrame, "lastLsn">;

/**
 * A `repl.batch` body of session 1, starting at LSN 1 and covering 1..1 with no entries (it
 * parses), with `fields` in place of any of that.
 */
export function batchBody<F extends object = Record<never, never>>(
  fields: F = {} as F,
): Omit<BatchBody, keyof F> & F {
  const empty: BatchBody = {
    v: 1,
    session: 1,
    startLsn: 1,
    fromLsn: 1,
    toLsn: 1,
    count: 0,
    records: new Uint8Array(),
  };
  return { ...empty, ...fields } as Omit<BatchBody, keyof F> & F;
}
