/**
 * Waiting for the event loop's next turn, for work done in steps so that timers, I/O and other
 * requests run between them (WAL reads, snapshot captures, digests).
 *
 * @module
 */

/** Lets timers and I/O callbacks run before the caller goes on. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
