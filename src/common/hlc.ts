/**
 * Hybrid logical clock packed in one safe integer: `wallMs * 2^10 + logical`.
 * 2^10 writes per millisecond per node before the clock runs ahead of the wall, which it is
 * allowed to do; 2^53 / 2^10 ms is the year 2248, so the packing never overflows.
 *
 * @module
 */
import { HLC_LOGICAL_BITS } from "./limits.ts";

const LOGICAL_SPAN = 2 ** HLC_LOGICAL_BITS;

/** Wall milliseconds of an HLC timestamp. */
export function hlcWallMs(hlc: number): number {
  return Math.floor(hlc / LOGICAL_SPAN);
}

export class Hlc {
  #last = 0;
  /** A timestamp greater than every one issued or observed before. */
  now(wallMs: number): number {
    const candidate = Math.floor(wallMs) * LOGICAL_SPAN;
    this.#last = candidate > this.#last ? candidate : this.#last + 1;
    return this.#last;
  }
  /** Moves the clock past a timestamp seen on a peer's entry. */
  observe(remote: number): void {
    if (remote > this.#last) this.#last = remote;
  }
  get last(): number {
    return this.#last;
  }
}
