/**
 * The log entry: the unit the WAL stores, replication ships and the key-value view applies.
 *
 * Identity is `(origin, seq)`: the node that first accepted the write and that node's dense
 * sequence number, unique cluster-wide. The `lsn` is local: where this node's WAL holds it.
 * The version of a key is `(hlc, origin)`, compared the same way on every node.
 *
 * @module
 */
import { Encoder } from "cbor-x";
import { InputError } from "./errors.ts";
import { KEY_BYTES_MAX } from "./limits.ts";

export type Op = "put" | "delete" | "append";
const OPS: readonly Op[] = ["put", "delete", "append"];

export interface Entry {
  /** Position in this node's WAL; assigned by the WAL on append. */
  lsn: number;
  /** Node id of the node that accepted the write. */
  origin: string;
  /** The origin's sequence number, dense from 1. */
  seq: number;
  /** Hybrid logical clock timestamp (see hlc.ts). */
  hlc: number;
  op: Op;
  /** Key for put/delete; "" for an append. */
  key: string;
  /** Payload for put/append; null for a delete. */
  value: Uint8Array | null;
  /** MIME type of the value ("" for none). */
  contentType: string;
  /** Version this write overwrote, as seen by the origin: hlc 0 when the key was absent. */
  prevHlc: number;
  prevOrigin: string;
}

/** A version of a key. */
export interface Version {
  hlc: number;
  origin: string;
}

/** Total order on versions: HLC first, origin id to break ties; the same on every node. */
export function compareVersions(a: Version, b: Version): number {
  if (a.hlc !== b.hlc) return a.hlc < b.hlc ? -1 : 1;
  return a.origin < b.origin ? -1 : a.origin > b.origin ? 1 : 0;
}

const ENTRY_FORMAT = 1;
const encoder = new Encoder({ useRecords: false, mapsAsObjects: true });

/** CBOR bytes of an entry (an array, so field names are not repeated in every record). */
export function encodeEntry(entry: Entry): Uint8Array {
  return encoder.encode([
    ENTRY_FORMAT,
    entry.lsn,
    entry.origin,
    entry.seq,
    entry.hlc,
    OPS.indexOf(entry.op),
    entry.key,
    entry.value,
    entry.contentType,
    entry.prevHlc,
    entry.prevOrigin,
  ]);
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/**
 * Decodes and validates entry bytes. Throws {@link InputError} on anything malformed: callers
 * pass bytes that already passed a CRC check, but a peer's CRC only proves the bytes arrived
 * as sent, not that they make sense.
 */
export function decodeEntry(bytes: Uint8Array): Entry {
  let raw: unknown;
  try {
    raw = encoder.decode(bytes);
  } catch (cause) {
    throw new InputError("bad_request", "Cannot decode entry: not valid CBOR", { cause });
  }
  if (!Array.isArray(raw) || raw.length !== 11 || raw[0] !== ENTRY_FORMAT) {
    throw new InputError("bad_request", "Cannot decode entry: unknown entry format");
  }
  const [, lsn, origin, seq, hlc, opIndex, key, value, contentType, prevHlc, prevOrigin] = raw;
  if (
    !isCount(lsn) || typeof origin !== "string" || origin.length === 0 || !isCount(seq) ||
    !isCount(hlc) || !isCount(opIndex) || opIndex >= OPS.length || typeof key !== "string" ||
    !(value === null || value instanceof Uint8Array) || typeof contentType !== "string" ||
    !isCount(prevHlc) || typeof prevOrigin !== "string"
  ) {
    throw new InputError("bad_request", "Cannot decode entry: a field has the wrong type");
  }
  return {
    lsn,
    origin,
    seq,
    hlc,
    op: OPS[opIndex],
    key,
    value: value === null ? null : new Uint8Array(value),
    contentType,
    prevHlc,
    prevOrigin,
  };
}

const utf8 = new TextEncoder();

/** Checks a key: non-empty, at most KEY_BYTES_MAX UTF-8 bytes, no control characters. */
export function validateKey(key: string): void {
  if (key.length === 0) throw new InputError("bad_key", "Invalid key: it is empty");
  const bytes = utf8.encode(key).length;
  if (bytes > KEY_BYTES_MAX) {
    throw new InputError(
      "bad_key",
      `Invalid key: ${bytes} bytes is over the limit of ${KEY_BYTES_MAX}`,
    );
  }
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(key)) {
    throw new InputError("bad_key", "Invalid key: it contains a control character");
  }
  if (key.isWellFormed && !key.isWellFormed()) {
    throw new InputError("bad_key", "Invalid key: it is not well-formed Unicode");
  }
}

/** A version vector: for each origin, the highest sequence held with no gap below it. */
export type VersionVector = Record<string, number>;

/** True when `have` holds everything `want` names. */
export function covers(have: VersionVector, want: VersionVector): boolean {
  for (const [origin, seq] of Object.entries(want)) {
    if ((have[origin] ?? 0) < seq) return false;
  }
  return true;
}
