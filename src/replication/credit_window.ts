/**
 * The leader's flow-control window toward one follower, after raft's inflight tracker: it
 * counts the batches, entries and bytes sent but not yet acknowledged, and refuses more once
 * the follower's credit (entries), the byte bound or the batch bound is used up. The leader
 * holds no entry bytes for what is in flight (a resend re-reads the WAL), so this window is
 * also the bound on what one follower can make its leader buffer. Pure: no I/O.
 *
 * @module
 */
import { invariant } from "../common/invariant.ts";

/** A batch sent and not yet acknowledged. */
export interface SentBatch {
  readonly toLsn: number;
  readonly entries: number;
  readonly bytes: number;
  /** When it was sent (the caller's clock, ms); NaN when the caller did not say. */
  readonly sentMs: number;
}

const NONE_FREED: readonly SentBatch[] = [];

/** Options of a {@link CreditWindow}. */
export interface CreditWindowOptions {
  /** Entries in flight the follower allows before it acks (it may grant more or less later). */
  creditEntries: number;
  bytesMax: number;
  batchesMax: number;
}

/** Batches, entries and bytes in flight to one follower, bounded by its credit. */
export class CreditWindow {
  #inflight: SentBatch[] = [];
  #entries = 0;
  #bytes = 0;
  #creditEntries: number;
  readonly bytesMax: number;
  readonly batchesMax: number;

  constructor(options: CreditWindowOptions) {
    invariant(
      options.creditEntries >= 0 && options.bytesMax > 0 && options.batchesMax > 0,
      "Cannot build a credit window: bounds must be positive",
    );
    this.#creditEntries = options.creditEntries;
    this.bytesMax = options.bytesMax;
    this.batchesMax = options.batchesMax;
  }

  /** True when one more batch may go out (at least one entry of credit and room in bytes). */
  hasCredit(): boolean {
    return this.#inflight.length < this.batchesMax && this.#entries < this.#creditEntries &&
      this.#bytes < this.bytesMax;
  }

  /** Entries the next batch may hold. */
  get entriesAvailable(): number {
    return Math.max(0, this.#creditEntries - this.#entries);
  }

  /** Bytes the next batch may hold. */
  get bytesAvailable(): number {
    return Math.max(0, this.bytesMax - this.#bytes);
  }

  get credit(): number {
    return this.#creditEntries;
  }

  get inflightEntries(): number {
    return this.#entries;
  }

  get inflightBytes(): number {
    return this.#bytes;
  }

  get inflightBatches(): number {
    return this.#inflight.length;
  }

  /** Records a batch covering the log up to `toLsn`, sent at `sentMs` (for ack latencies). */
  onSend(toLsn: number, entries: number, bytes: number, sentMs = Number.NaN): void {
    invariant(this.hasCredit(), "Cannot send a batch: no credit left");
    const last = this.#inflight[this.#inflight.length - 1];
    invariant(
      last === undefined || toLsn > last.toLsn,
      "Cannot send a batch: it does not follow the last one",
    );
    this.#inflight.push({ toLsn, entries, bytes, sentMs });
    this.#entries += entries;
    this.#bytes += bytes;
  }

  /**
   * Frees every batch with `toLsn <= ackedLsn` and takes the credit the follower granted.
   * Returns the batches freed, oldest first.
   */
  onAck(ackedLsn: number, creditEntries?: number): readonly SentBatch[] {
    let freed = 0;
    while (freed < this.#inflight.length && this.#inflight[freed].toLsn <= ackedLsn) {
      this.#entries -= this.#inflight[freed].entries;
      this.#bytes -= this.#inflight[freed].bytes;
      freed++;
    }
    const freedBatches = freed > 0 ? this.#inflight.splice(0, freed) : NONE_FREED;
    if (creditEntries !== undefined) this.#creditEntries = creditEntries;
    return freedBatches;
  }

  /** Forgets everything in flight (the stream is reopened and will resend). */
  reset(): void {
    this.#inflight = [];
    this.#entries = 0;
    this.#bytes = 0;
  }
}
