/**
 * Polling with a bounded deadline, for tests that wait on real processes: never a fixed sleep.
 *
 * @module
 */

export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** Count a throwing check as "not yet" (a node restarting) instead of failing at once. */
  tolerateErrors?: boolean;
}

/** Polls `done` until it answers true; returns the milliseconds waited, or throws naming `what`. */
export async function waitFor(
  what: string,
  done: () => boolean | Promise<boolean>,
  optionsOrTimeoutMs: WaitOptions | number = {},
): Promise<number> {
  const options = typeof optionsOrTimeoutMs === "number"
    ? { timeoutMs: optionsOrTimeoutMs }
    : optionsOrTimeoutMs;
  const timeoutMs = options.timeoutMs ?? 15_000;
  const started = performance.now();
  while (performance.now() - started < timeoutMs) {
    try {
      if (await done()) return performance.now() - started;
    } catch (error) {
      if (!options.tolerateErrors) throw error;
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 25));
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** {@link waitFor} for checks that ask nodes which may be restarting: errors mean "not yet". */
export function waitForNodes(
  what: string,
  done: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
): Promise<number> {
  return waitFor(what, done, { timeoutMs, intervalMs: 50, tolerateErrors: true });
}

/** Version vectors compare equal whatever their key order. */
export function sameVersionVector(a: unknown, b: unknown): boolean {
  const norm = (vv: unknown) => JSON.stringify(Object.entries(vv as Record<string, number>).sort());
  return norm(a) === norm(b);
}
