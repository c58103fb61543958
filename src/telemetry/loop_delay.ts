/**
 * Event-loop delay: how late a repeating timer fires. Every latency the node takes in
 * JavaScript (fdatasync, an HTTP request, a replication ack) ends when the event loop gets
 * round to the completion, so on a busy node each of them includes this delay. Read beside
 * `shanghai_wal_fsync_latency`, it tells a slow disk (fsync high, loop delay low) from a node
 * short of CPU (both high): during a catch-up with the WAL on tmpfs, where fdatasync does no
 * I/O at all, the fsync histogram still averaged 2-3 ms (docs/BENCHMARKS.md, session 9).
 *
 * The sampler is pure (it is told the time); {@link startLoopDelaySampler} is the timer shell.
 *
 * @module
 */
import type { Clock } from "../common/clock.ts";

/** Turns timer firings into delays: each firing is due `intervalMs` after the previous one. */
export class LoopDelaySampler {
  readonly #intervalMs: number;
  #dueMs: number;

  constructor(intervalMs: number, startMs: number) {
    this.#intervalMs = intervalMs;
    this.#dueMs = startMs + intervalMs;
  }

  /** The timer fired at `nowMs`: returns how late it was, and expects the next firing. */
  fired(nowMs: number): number {
    const delayMs = Math.max(0, nowMs - this.#dueMs);
    this.#dueMs = nowMs + this.#intervalMs;
    return delayMs;
  }
}

/**
 * Samples the event loop every `intervalMs` with an unref'd timer (it never holds the process
 * open) and hands each delay to `onDelay`. Returns the function that stops it.
 */
export function startLoopDelaySampler(
  clock: Clock,
  intervalMs: number,
  onDelay: (delayMs: number) => void,
): () => void {
  const sampler = new LoopDelaySampler(intervalMs, clock.monoMs());
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  const arm = () => {
    const next = setTimeout(() => {
      onDelay(sampler.fired(clock.monoMs()));
      if (!stopped) arm();
    }, intervalMs);
    Deno.unrefTimer(next);
    timer = next;
  };
  arm();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
