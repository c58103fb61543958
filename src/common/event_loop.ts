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

/**
 * Calls `step` until it answers true (the work is done), with a turn of the event loop between
 * calls, and at most `stepsMax` calls. Resolves with whether the work got done.
 */
export async function runInSteps(step: () => boolean, stepsMax = Infinity): Promise<boolean> {
  for (let calls = 1; !step(); calls++) {
    if (calls >= stepsMax) return false;
    await yieldToEventLoop();
  }
  return true;
}
