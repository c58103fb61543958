/**
 * Time as an input. Pure code takes `nowMs` as an argument; shells take a {@link Clock}
 * so tests can drive them with {@link FakeClock}.
 *
 * @module
 */

export interface Clock {
  /** Wall-clock milliseconds since the epoch (used for HLC and file headers). */
  nowMs(): number;
  /** Monotonic milliseconds, for durations and timeouts. */
  monoMs(): number;
}

export const systemClock: Clock = {
  nowMs: () => Date.now(),
  monoMs: () => performance.now(),
};

/** A clock that moves only when told to. */
export class FakeClock implements Clock {
  #nowMs: number;
  #monoMs = 0;
  constructor(startMs = 1_700_000_000_000) {
    this.#nowMs = startMs;
  }
  nowMs(): number {
    return this.#nowMs;
  }
  monoMs(): number {
    return this.#monoMs;
  }
  advance(ms: number): void {
    this.#nowMs += ms;
    this.#monoMs += ms;
  }
}
