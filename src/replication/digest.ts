/**
 * An order-independent digest of key-value state: SHA-256 over the live keys in key order,
 * each with its version and value. Two replicas with equal digests hold the same keys, values
 * and versions, whatever order their entries arrived in. Tombstones are left out: when they
 * are collected is a local matter and changes no read.
 *
 * Per key: key length (u32), origin length (u32), HLC (f64), value length (u32), key bytes,
 * origin bytes, value bytes. Records are packed into one buffer and hashed in large updates
 * (one update per record was three times slower).
 *
 * @module
 */
import { createHash, type Hash } from "node:crypto";
import type { KeyRecord } from "../storage/kv/keyspace.ts";

const utf8 = new TextEncoder();
const CHUNK_BYTES = 256 * 1024;
const HEADER_BYTES = 20;
/**
 * Keys hashed per turn of the event loop by {@link stateDigestInSteps} (about 0.5 MiB of 1 KiB
 * values): one synchronous digest of 300,000 such keys held the loop for about a second.
 */
export const DIGEST_STEP_KEYS = 500;

/** Feeds live records, in key order, into one SHA-256 (the digest's byte layout above). */
class DigestWriter {
  readonly #hash: Hash = createHash("sha256");
  #buffer = new Uint8Array(CHUNK_BYTES);
  #view = new DataView(this.#buffer.buffer);
  #at = 0;

  add(key: string, record: KeyRecord): void {
    const value = record.value;
    if (value === null) return;
    const need = HEADER_BYTES + key.length * 3 + record.origin.length * 3 + value.length;
    if (this.#at + need > this.#buffer.length) {
      this.#hash.update(this.#buffer.subarray(0, this.#at));
      this.#at = 0;
      if (need > this.#buffer.length) {
        this.#buffer = new Uint8Array(need);
        this.#view = new DataView(this.#buffer.buffer);
      }
    }
    const at = this.#at;
    const buffer = this.#buffer;
    const keyBytes = utf8.encodeInto(key, buffer.subarray(at + HEADER_BYTES)).written;
    const originBytes =
      utf8.encodeInto(record.origin, buffer.subarray(at + HEADER_BYTES + keyBytes)).written;
    this.#view.setUint32(at, keyBytes);
    this.#view.setUint32(at + 4, originBytes);
    this.#view.setFloat64(at + 8, record.hlc);
    this.#view.setUint32(at + 16, value.length);
    buffer.set(value, at + HEADER_BYTES + keyBytes + originBytes);
    this.#at = at + HEADER_BYTES + keyBytes + originBytes + value.length;
  }

  finish(): string {
    this.#hash.update(this.#buffer.subarray(0, this.#at));
    return this.#hash.digest("hex");
  }
}

/** Hex SHA-256 of the live records (any order in; sorted inside). */
export function stateDigest(records: Iterable<[string, KeyRecord]>): string {
  const live: [string, KeyRecord][] = [];
  for (const row of records) if (row[1].value !== null) live.push(row);
  live.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const writer = new DigestWriter();
  for (const [key, record] of live) writer.add(key, record);
  return writer.finish();
}

/** The view of one moment in key order (Keyspace.beginSortedRead). */
export interface SortedRead {
  /** Every key of the moment, in key order. */
  readonly keys: Iterable<string>;
  recordAt(key: string): KeyRecord | undefined;
  close(): void;
}

/**
 * {@link stateDigest} of the moment `read` was begun, hashed DIGEST_STEP_KEYS keys at a time
 * with `pause()` between (the node's turn of the event loop), so writes go on meanwhile.
 * Closes `read`.
 */
export async function stateDigestInSteps(
  read: SortedRead,
  pause: () => Promise<void>,
  stepKeys = DIGEST_STEP_KEYS,
): Promise<string> {
  try {
    const writer = new DigestWriter();
    let inStep = 0;
    for (const key of read.keys) {
      if (inStep === stepKeys) {
        await pause();
        inStep = 0;
      }
      inStep++;
      const record = read.recordAt(key);
      if (record !== undefined) writer.add(key, record);
    }
    return writer.finish();
  } finally {
    read.close();
  }
}
