/**
 * An order-independent digest of key-value state: SHA-256 over the live keys in key order,
 * each with its version and value. Two replicas with equal digests hold the same keys, values
 * and versions, whatever order their entries arrived in. Tombstones are left out: when they
 * are collected is a local matter and changes no read.
 *
 * @module
 */
import { createHash } from "node:crypto";
import type { KeyRecord } from "../storage/kv/keyspace.ts";

const utf8 = new TextEncoder();

/** Hex SHA-256 of the live records (any order in; sorted inside). */
export function stateDigest(records: Iterable<[string, KeyRecord]>): string {
  const live = [...records].filter(([, r]) => r.value !== null);
  live.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const hash = createHash("sha256");
  const header = new DataView(new ArrayBuffer(16));
  for (const [key, record] of live) {
    const keyBytes = utf8.encode(key);
    const origin = utf8.encode(record.origin);
    header.setUint32(0, keyBytes.length);
    header.setUint32(4, origin.length);
    header.setFloat64(8, record.hlc);
    hash.update(new Uint8Array(header.buffer));
    hash.update(keyBytes);
    hash.update(origin);
    const value = record.value!;
    const length = new DataView(new ArrayBuffer(4));
    length.setUint32(0, value.length);
    hash.update(new Uint8Array(length.buffer));
    hash.update(value);
  }
  return hash.digest("hex");
}
