/**
 * Idle polling: while a node has traffic, a helper thread at the kernel's idle priority keeps its
 * cores from halting between requests and during its WAL's fdatasync.
 *
 * Why: on our machines (a nested, paravirtualized guest with the guest's halt polling off) a
 * core with nothing to run halts into the hypervisor at once, and the node's next request then
 * starts on caches the halt lost. At one client the node's thread blocks in fdatasync for most
 * of each request, so every request paid for it: busy loops at idle priority beside a node made
 * it 16-37% faster at one client and about 20% at ten (docs/BENCHMARKS.md, sessions 30 and 32).
 * This is what Seastar's reactor does when it polls before sleeping. It is off by default
 * (`--idle-poll-us 0`) since session 39, whose machine, the same kind of guest, ran one node
 * slower with it at 1, 10 and 50 clients in most of eight alternating pairs, and with twice the
 * 1-client p99: whether it pays depends on the host, so an operator measures before turning it on.
 *
 * How: the poller is a Worker that makes its own thread `SCHED_IDLE` (libc's
 * `sched_setscheduler` through Deno's FFI; Linux only), so it runs only on a core nothing else
 * wants and gives way the moment anything else, the node included, becomes runnable. It spins
 * while the node's activity counter ({@link IdlePoller.touch}, one atomic add per request or WAL
 * batch) moved within the last window, then parks on the counter (a futex wait) until the
 * next touch wakes it. A node without traffic parks its poller a window after its last
 * request; a busy node leaves it no CPU to take.
 *
 * The worker's code is embedded here as text (a compiled binary has no source tree).
 *
 * @module
 */
import { LIBC_NAMES } from "../common/libc.ts";

/** Shared words: the activity counter, whether the poller is parked, the stop flag. */
const COUNTER = 0;
const PARKED = 1;
const STOP = 2;

/** The poller's code, run as a module Worker from a blob URL. */
const POLLER_SOURCE = `
const SCHED_IDLE = 5;
self.onmessage = (event) => {
  const { shared, windowMs, libcNames } = event.data;
  const words = new Int32Array(shared);
  const failures = [];
  let idle = false;
  for (const name of libcNames) {
    try {
      const libc = Deno.dlopen(name, {
        sched_setscheduler: { parameters: ["i32", "i32", "buffer"], result: "i32" },
      }).symbols;
      // pid 0 is the calling thread: only this poller's thread changes policy.
      idle = libc.sched_setscheduler(0, SCHED_IDLE, new Int32Array(1)) === 0;
      if (!idle) failures.push(name + ": sched_setscheduler(SCHED_IDLE) refused");
      break;
    } catch (error) {
      failures.push(name + ": " + error.message);
    }
  }
  // A poller at normal priority would take CPU from the node: without SCHED_IDLE, none runs.
  self.postMessage({ started: idle, problem: failures.join("; ") });
  if (!idle) return;
  let seen = Atomics.load(words, ${COUNTER});
  let movedAt = performance.now();
  while (Atomics.load(words, ${STOP}) === 0) {
    let moved = false;
    for (let i = 0; i < 512; i++) {
      const now = Atomics.load(words, ${COUNTER});
      if (now !== seen) {
        seen = now;
        moved = true;
      }
    }
    const at = performance.now();
    if (moved) {
      movedAt = at;
    } else if (at - movedAt >= windowMs) {
      Atomics.add(words, ${PARKED}, 1);
      Atomics.wait(words, ${COUNTER}, seen);
      Atomics.sub(words, ${PARKED}, 1);
      seen = Atomics.load(words, ${COUNTER});
      movedAt = performance.now();
    }
  }
};
`;

export interface IdlePollerOptions {
  /** How long after the last touch the poller keeps spinning, µs (0: no poller). */
  windowMicros: number;
  /** Called once if the poller cannot run here, with the reason. */
  onUnavailable?: (reason: string) => void;
  /** The C library to load (default: glibc's names); for tests. */
  libcNames?: readonly string[];
}

/**
 * A helper thread that keeps the node's cores from halting while it has traffic. One: it did as
 * well as one per core here (docs/BENCHMARKS.md, session 32).
 */
export class IdlePoller {
  readonly #words = new Int32Array(new SharedArrayBuffer(3 * Int32Array.BYTES_PER_ELEMENT));
  #worker: Worker | undefined;

  private constructor() {}

  /**
   * Starts the poller; resolves once it said whether it runs. Where it cannot (not Linux, no FFI
   * permission, no libc, SCHED_IDLE refused) it ends, `onUnavailable` hears why, and
   * {@link touch} stays a cheap no-op.
   */
  static async start(options: IdlePollerOptions): Promise<IdlePoller> {
    const poller = new IdlePoller();
    if (options.windowMicros <= 0) return poller;
    if (Deno.build.os !== "linux") {
      options.onUnavailable?.(`not on Linux (${Deno.build.os})`);
      return poller;
    }
    const url = URL.createObjectURL(new Blob([POLLER_SOURCE], { type: "text/javascript" }));
    try {
      const worker = new Worker(url, { type: "module", name: "idle-poll" });
      poller.#worker = worker;
      const answer = new Promise<{ started: boolean; problem: string }>((resolve) => {
        worker.onmessage = (event) => resolve(event.data);
        worker.onerror = (event) => {
          event.preventDefault();
          resolve({ started: false, problem: event.message });
        };
      });
      worker.postMessage({
        shared: poller.#words.buffer,
        windowMs: options.windowMicros / 1000,
        libcNames: options.libcNames ?? LIBC_NAMES,
      });
      const { started, problem } = await answer;
      if (!started) {
        poller.stop();
        options.onUnavailable?.(problem || "the poller did not start");
      }
    } finally {
      URL.revokeObjectURL(url);
    }
    return poller;
  }

  /** Whether the poller runs. */
  get running(): boolean {
    return this.#worker !== undefined;
  }

  /** Whether the poller is parked now (waiting for a touch) rather than spinning. */
  get parked(): boolean {
    return Atomics.load(this.#words, PARKED) !== 0;
  }

  /** Notes activity: the poller spins on (or wakes) for another window. */
  touch(): void {
    const words = this.#words;
    Atomics.add(words, COUNTER, 1);
    if (Atomics.load(words, PARKED) !== 0) Atomics.notify(words, COUNTER);
  }

  /** Ends the poller (at once: a spinning poller checks the stop flag between spins). */
  stop(): void {
    const worker = this.#worker;
    if (worker === undefined) return;
    this.#worker = undefined;
    Atomics.store(this.#words, STOP, 1);
    Atomics.add(this.#words, COUNTER, 1);
    Atomics.notify(this.#words, COUNTER);
    worker.terminate();
  }
}
