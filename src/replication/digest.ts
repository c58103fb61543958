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
import { createHash } from "node:crypto";
import type { KeyRecord } from "../storage/kv/keyspace.ts";

const utf8 = new TextEncoder();
const CHUNK_BYTES = 256 * 1024;
const HEADER_BYTES = 20;

/** Hex SHA-256 of the live records (any order in; sorted inside). */
export function stateDigest(records: Iterable<[string, KeyRecord]>): string {
  const live: [string, KeyRecord][] = [];
  for (const row of records) if (row[1].value !== null) live.push(row);
  live.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const hash = createHash("sha256");
  let buffer = new Uint8Array(CHUNK_BYTES);
  let view = new DataView(buffer.buffer);
  let at = 0;
  for (const [key, record] of live) {
    const value = record.value!;
    const need = HEADER_BYTES + key.length * 3 + record.origin.length * 3 + value.length;
    if (at + need > buffer.length) {
      hash.update(buffer.subarray(0, at));
      at = 0;
      if (need > buffer.length) {
        buffer = new Uint8Array(need);
        view = new DataView(buffer.buffer);
      }
    }
    const keyBytes = utf8.encodeInto(key, buffer.subarray(at + HEADER_BYTES)).written;
    const originBytes =
      utf8.encodeInto(record.origin, buffer.subarray(at + HEADER_BYTES + keyBytes)).written;
    view.setUint32(at, keyBytes);
    view.setUint32(at + 4, originBytes);
    view.setFloat64(at + 8, record.hlc);
    view.setUint32(at + 16, value.length);
    buffer.set(value, at + HEADER_BYTES + keyBytes + originBytes);
    at += HEADER_BYTES + keyBytes + originBytes + value.length;
  }
  hash.update(buffer.subarray(0, at));
  return hash.digest("hex");
}
