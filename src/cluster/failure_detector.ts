/**
 * Failure detectors: given when a member was last heard from, say whether it is alive,
 * suspect or down. Pure: time is an argument.
 *
 * - `swim` (default): fixed timeouts, the seed's operator states: suspect after
 *   `suspectAfterMs` of silence, down after `downAfterMs`.
 * - `phi`: phi accrual (Hayashibara et al.), as in Akka and Cassandra: suspicion is a level
 *   φ = -log10(P(a heartbeat arrives later than now)) over the observed inter-arrival times of
 *   a member's probe acks, so a member on a jittery link is suspected later and one on a steady
 *   link earlier. Down stays at `downAfterMs` of silence, so the operator's bound holds in both.
 *
 * @module
 */

export type Verdict = "alive" | "suspect" | "down";
export type DetectorKind = "swim" | "phi";
export const DETECTOR_KINDS: readonly DetectorKind[] = ["swim", "phi"];

export interface DetectorTimings {
  heartbeatIntervalMs: number;
  suspectAfterMs: number;
  downAfterMs: number;
}

export interface FailureDetector {
  /** Any evidence the member is alive (a message from it, or an indirect ack for it). */
  heard(id: string, nowMs: number): void;
  /** A regular heartbeat arrival (an ack to our periodic probe); also counts as heard. */
  sample(id: string, nowMs: number): void;
  /** Starts a member afresh: heard now, no history (new member, or one that came back). */
  reset(id: string, nowMs: number): void;
  forget(id: string): void;
  verdict(id: string, nowMs: number): Verdict;
  lastHeardMs(id: string): number | undefined;
}

/** Fixed timeouts: the seed's "no heartbeat for 10 s: suspect; 15 s: down". */
export class TimeoutDetector implements FailureDetector {
  #last = new Map<string, number>();
  constructor(readonly timings: DetectorTimings) {}
  heard(id: string, nowMs: number): void {
    this.#last.set(id, Math.max(nowMs, this.#last.get(id) ?? nowMs));
  }
  sample(id: string, nowMs: number): void {
    this.heard(id, nowMs);
  }
  reset(id: string, nowMs: number): void {
    this.#last.set(id, nowMs);
  }
  forget(id: string): void {
    this.#last.delete(id);
  }
  lastHeardMs(id: string): number | undefined {
    return this.#last.get(id);
  }
  verdict(id: string, nowMs: number): Verdict {
    const last = this.#last.get(id);
    if (last === undefined) return "alive";
    const silenceMs = nowMs - last;
    if (silenceMs >= this.timings.downAfterMs) return "down";
    if (silenceMs >= this.timings.suspectAfterMs) return "suspect";
    return "alive";
  }
}

/** Samples kept per member. */
export const PHI_WINDOW = 100;
/** φ at which a member becomes suspect (Akka's default). */
export const PHI_SUSPECT = 8;

interface PhiHistory {
  lastSampleMs: number | undefined;
  intervals: number[];
  sum: number;
  sumSquares: number;
}

/** Phi accrual over probe-ack inter-arrival times; down at the configured silence bound. */
export class PhiAccrualDetector implements FailureDetector {
  #history = new Map<string, PhiHistory>();
  #timeouts: TimeoutDetector;
  // One missed heartbeat is normal (a lost probe); a very steady link must not make φ spike
  // a few ms late, hence a floor on the deviation.
  readonly #acceptablePauseMs: number;
  readonly #stdDevMinMs: number;

  constructor(readonly timings: DetectorTimings) {
    this.#timeouts = new TimeoutDetector(timings);
    this.#acceptablePauseMs = timings.heartbeatIntervalMs;
    this.#stdDevMinMs = timings.heartbeatIntervalMs / 10;
  }

  heard(id: string, nowMs: number): void {
    this.#timeouts.heard(id, nowMs);
  }

  sample(id: string, nowMs: number): void {
    this.heard(id, nowMs);
    const h = this.#history.get(id) ?? this.#fresh(id);
    if (h.lastSampleMs !== undefined) {
      const interval = nowMs - h.lastSampleMs;
      // A gap longer than the down bound was an outage, not a sample of the link.
      if (interval > 0 && interval < this.timings.downAfterMs) {
        h.intervals.push(interval);
        h.sum += interval;
        h.sumSquares += interval * interval;
        if (h.intervals.length > PHI_WINDOW) {
          const old = h.intervals.shift()!;
          h.sum -= old;
          h.sumSquares -= old * old;
        }
      }
    }
    h.lastSampleMs = nowMs;
  }

  reset(id: string, nowMs: number): void {
    this.#timeouts.reset(id, nowMs);
    this.#fresh(id);
  }

  forget(id: string): void {
    this.#timeouts.forget(id);
    this.#history.delete(id);
  }

  lastHeardMs(id: string): number | undefined {
    return this.#timeouts.lastHeardMs(id);
  }

  /** φ for a member now (0 while there is no history). */
  phi(id: string, nowMs: number): number {
    const last = this.#timeouts.lastHeardMs(id);
    if (last === undefined) return 0;
    const h = this.#history.get(id);
    const count = h?.intervals.length ?? 0;
    // Until samples exist, assume the configured interval.
    const mean = (count > 0 ? h!.sum / count : this.timings.heartbeatIntervalMs) +
      this.#acceptablePauseMs;
    const variance = count > 1 ? Math.max(0, h!.sumSquares / count - (h!.sum / count) ** 2) : 0;
    const stdDev = Math.max(Math.sqrt(variance), this.#stdDevMinMs);
    return phiOf(nowMs - last, mean, stdDev);
  }

  verdict(id: string, nowMs: number): Verdict {
    const byTimeout = this.#timeouts.verdict(id, nowMs);
    if (byTimeout === "down") return "down";
    return this.phi(id, nowMs) >= PHI_SUSPECT ? "suspect" : "alive";
  }

  #fresh(id: string): PhiHistory {
    const h: PhiHistory = { lastSampleMs: undefined, intervals: [], sum: 0, sumSquares: 0 };
    this.#history.set(id, h);
    return h;
  }
}

/** φ of a silence under a normal distribution, with Akka's logistic approximation of the CDF. */
export function phiOf(silenceMs: number, meanMs: number, stdDevMs: number): number {
  const y = (silenceMs - meanMs) / stdDevMs;
  const e = Math.exp(-y * (1.5976 + 0.070566 * y * y));
  const pLater = silenceMs > meanMs ? e / (1 + e) : 1 - 1 / (1 + e);
  return pLater <= 0 ? Infinity : -Math.log10(pLater);
}

export function createDetector(kind: DetectorKind, timings: DetectorTimings): FailureDetector {
  return kind === "phi" ? new PhiAccrualDetector(timings) : new TimeoutDetector(timings);
}
