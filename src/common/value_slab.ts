/**
 * Where a node's request bodies are read to: small ones are carved, one after the other, out of
 * a shared slab instead of each getting an ArrayBuffer of its own.
 *
 * Why: a value the key-value view keeps survives the young generation's next two scavenges, and
 * each scavenge copies every object that survives it. A value of its own is two such objects (a
 * Uint8Array and its ArrayBuffer, about 150 bytes together); a slot in a slab is none, as the view
 * keeps the slab's buffer and the value's place in it (see Keyspace). With every write leaving
 * about a third fewer bytes to copy, the scavenges that pause the one JavaScript thread every
 * ~80 ms under load got 40% shorter (docs/BENCHMARKS.md, session 25).
 *
 * A slab is kept alive by any view into it: the key-value view counts the live bytes in each
 * and copies the survivors out of one that holds less than half of what was handed out of it
 * ({@link slabBytesHandedOut}). Bodies for routes that keep nothing (appends, refused writes)
 * simply leave dead bytes behind in a slab that will be collected with it.
 *
 * @module
 */
import { VALUE_SLAB_BYTES, VALUE_SLAB_TAKE_BYTES_MAX } from "./limits.ts";

let slab = new Uint8Array(0);
let handedOut = 0;

/**
 * `length` bytes to read a value into: a slot of the current slab when it is at most
 * VALUE_SLAB_TAKE_BYTES_MAX, else a buffer of its own. The bytes are zero.
 */
export function takeValueBytes(length: number): Uint8Array {
  if (length > VALUE_SLAB_TAKE_BYTES_MAX || length === 0) return new Uint8Array(length);
  if (handedOut + length > slab.length) {
    slab = new Uint8Array(VALUE_SLAB_BYTES);
    handedOut = 0;
  }
  // The constructor, not subarray(): subarray looks up a species constructor first (about half
  // the cost of carving a slot here).
  const bytes = new Uint8Array(slab.buffer, handedOut, length);
  handedOut += length;
  return bytes;
}

/**
 * How many bytes of `buffer` have been handed out: for the slab being carved now, what went so
 * far; for any other buffer (a finished slab, a replication batch), all of it.
 */
export function slabBytesHandedOut(buffer: ArrayBufferLike): number {
  return buffer === slab.buffer ? handedOut : buffer.byteLength;
}
