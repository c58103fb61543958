import { appendEntry, type EntryInput } from "../../src/storage/wal/wal.ts";

/** An opaque append entry of `bytes` bytes whose payload encodes `seq`. */
export function appendInput(seq: number, bytes = 16, origin = "test"): EntryInput {
  const value = new Uint8Array(bytes);
  new DataView(value.buffer).setUint32(0, seq, true);
  return appendEntry(value, { origin, seq });
}

export function seqOf(value: Uint8Array | null): number {
  return new DataView(value!.buffer, value!.byteOffset).getUint32(0, true);
}
