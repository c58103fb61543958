/**
 * Log lines for the events an operator must see without a dashboard, one structured line per
 * event: slow WAL writes (over seed 002's 50 ms alert threshold, at most one line per interval
 * with a count of the rest), cluster members changing state, and readiness turning on or off.
 *
 * @module
 */
import type { EventBus } from "./events.ts";
import type { Logger } from "./log.ts";

/** A WAL batch slower than this is logged (seed 002's p99 alert threshold). */
export const SLOW_WAL_WRITE_MS = 50;
/** At most one slow-write line per this interval; the rest are counted into the next line. */
export const SLOW_WAL_LOG_INTERVAL_MS = 10_000;

/** Subscribes the log lines; returns the function that unsubscribes them. */
export function logEvents(events: EventBus, logger: Logger, nowMs: () => number): () => void {
  let lastSlowLogMs = -Infinity;
  let suppressed = 0;
  const offs = [
    events.on("wal.write.completed", (e) => {
      if (e.durationMs <= SLOW_WAL_WRITE_MS) return;
      const now = nowMs();
      if (now - lastSlowLogMs < SLOW_WAL_LOG_INTERVAL_MS) {
        suppressed++;
        return;
      }
      logger.warn("Slow WAL write", {
        durationMs: Math.round(e.durationMs * 10) / 10,
        syncMs: Math.round(e.syncMs * 10) / 10,
        bytes: e.bytes,
        entries: e.entries,
        thresholdMs: SLOW_WAL_WRITE_MS,
        slowWritesNotLogged: suppressed,
      });
      lastSlowLogMs = now;
      suppressed = 0;
    }),
    events.on("cluster.member.changed", (e) => {
      const fields = {
        nodeId: e.nodeId,
        state: e.state,
        previous: e.previous ?? null,
        address: e.address ?? null,
      };
      if (e.state === "down" || e.state === "suspect") {
        logger.warn("Cluster member state changed", fields);
      } else logger.info("Cluster member state changed", fields);
    }),
  ];
  return () => offs.forEach((off) => off());
}

/** Logs readiness only when it changes (the node calls this on its ops timer). */
export class ReadinessLog {
  #last: string | undefined;
  constructor(readonly logger: Logger) {}

  observe(readiness: { ready: boolean; reasons: string[] }): void {
    const key = readiness.ready ? "ready" : readiness.reasons.join("; ");
    if (key === this.#last) return;
    const first = this.#last === undefined;
    this.#last = key;
    if (readiness.ready) {
      if (!first) this.logger.info("Node ready again");
    } else this.logger.warn("Node not ready", { reasons: readiness.reasons });
  }
}
