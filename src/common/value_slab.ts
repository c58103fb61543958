/**
 * Where a node's values are read to: small request bodies, and the payloads of the frames its
 * peers send (a follower keeps a replication batch's values where they arrived), are carved,
 * one after the other, out of shared slabs instead of each getting an ArrayBuffer of its own.
 *
 * Why: a value the key-value view keeps survives the young generation's next two scavenges, and
 * each scavenge copies every object that survives it. A value of its own is two such objects (a
 * Uint8Array and its ArrayBuffer, about 150 bytes together); a slot in a slab is none, as the view
 * keeps the slab's buffer and the value's place in it (see Keyspace). With every write leaving
 * about a third fewer bytes to copy, the scavenges that pause the one JavaScript thread every
 * ~80 ms under load got 40% shorter (docs/BENCHMARKS.md, session 25). And a slab can be touched
 * by another thread before it is needed (prefaulted_slabs.ts), where a buffer of its own costs
 * the event loop a page fault per 4 KiB.
 *
 * A slab is kept alive by any view into it: the key-value view counts the live bytes in each
 * and copies the survivors out of one that holds less than half of what was handed out of it
 * ({@link slabBytesHandedOut}). What keeps nothing (appends, refused writes, frames other than
 * a batch's) simply leaves dead bytes behind in a slab that will be collected with it.
 *
 * @module
 */
import {
  FRAME_SLAB_BYTES,
  FRAME_SLAB_TAKE_BYTES_MAX,
  VALUE_SLAB_BYTES,
  VALUE_SLAB_TAKE_BYTES_MAX,
} from "./limits.ts";
import {
  PrefaultedSlabs,
  type PrefaultedSlabStats,
  type SlabMaker,
  WorkerSlabMaker,
} from "./prefaulted_slabs.ts";

/** Carves slots out of one slab at a time; larger takes get buffers of their own. */
class SlabCarver {
  readonly #takeMax: number;
  readonly slabs: PrefaultedSlabs;
  #slab = new Uint8Array(0);
  #handedOut = 0;

  constructor(slabBytes: number, takeMax: number) {
    this.slabs = new PrefaultedSlabs(slabBytes);
    this.#takeMax = takeMax;
  }

  take(length: number): Uint8Array {
    if (length > this.#takeMax || length === 0) return new Uint8Array(length);
    if (this.#handedOut + length > this.#slab.length) {
      this.#slab = this.slabs.take();
      this.#handedOut = 0;
    }
    // The constructor, not subarray(): subarray looks up a species constructor first (about half
    // the cost of carving a slot here).
    const bytes = new Uint8Array(this.#slab.buffer, this.#handedOut, length);
    this.#handedOut += length;
    return bytes;
  }

  /** What was handed out of `buffer` when it is the slab being carved now, else undefined. */
  handedOut(buffer: ArrayBufferLike): number | undefined {
    return buffer === this.#slab.buffer ? this.#handedOut : undefined;
  }
}

const requestBodies = new SlabCarver(VALUE_SLAB_BYTES, VALUE_SLAB_TAKE_BYTES_MAX);
const framePayloads = new SlabCarver(FRAME_SLAB_BYTES, FRAME_SLAB_TAKE_BYTES_MAX);

/**
 * `length` bytes to read a request body into: a slot of the current slab when it is at most
 * VALUE_SLAB_TAKE_BYTES_MAX, else a buffer of its own. The bytes are zero.
 */
export function takeValueBytes(length: number): Uint8Array {
  return requestBodies.take(length);
}

/**
 * `length` bytes to read a peer's frame payload into: a slot of the current frame slab when it
 * is at most FRAME_SLAB_TAKE_BYTES_MAX, else a buffer of its own. The bytes are zero.
 */
export function takeFrameBytes(length: number): Uint8Array {
  return framePayloads.take(length);
}

/**
 * How many bytes of `buffer` have been handed out: for a slab being carved now, what went so
 * far; for any other buffer (a finished slab, a buffer of its own), all of it.
 */
export function slabBytesHandedOut(buffer: ArrayBufferLike): number {
  return requestBodies.handedOut(buffer) ?? framePayloads.handedOut(buffer) ?? buffer.byteLength;
}

/** Holders of the prefaulted slabs ({@link holdPrefaultedSlabs}): the pools are the process's. */
let holders = 0;
let workerMaker: WorkerSlabMaker | undefined;

/**
 * Keeps `readyMax` (at least 1) prefaulted slabs ready for request bodies and for frames each,
 * until every holder has released them: a node holds them while it runs (`--prefault-slabs`);
 * the library alone keeps none. `make` defaults to a Worker of the process's own
 * ({@link WorkerSlabMaker}). The last release lets the slabs go, stops the Worker and resolves
 * once no slab is being made; a second release of one hold does nothing. Says why it cannot hold
 * them when the Worker cannot start.
 */
export function holdPrefaultedSlabs(
  readyMax: number,
  make?: SlabMaker,
): { release(): Promise<void> } | { problem: string } {
  let maker = make;
  if (maker === undefined) {
    const started = workerMaker ?? WorkerSlabMaker.start();
    if ("problem" in started) return { problem: started.problem };
    maker = (workerMaker = started).make;
  }
  requestBodies.slabs.keepReady(readyMax, maker);
  framePayloads.slabs.keepReady(readyMax, maker);
  holders++;
  let released = false;
  return {
    release: async () => {
      if (released) return;
      released = true;
      if (--holders > 0) return;
      requestBodies.slabs.keepReady(0, undefined);
      framePayloads.slabs.keepReady(0, undefined);
      workerMaker?.stop();
      workerMaker = undefined;
      await Promise.all([requestBodies.slabs.idle(), framePayloads.slabs.idle()]);
    },
  };
}

/** Both pools' counters, by the kind label the metrics give them. */
export function prefaultStats(): Record<"request_bodies" | "frames", PrefaultedSlabStats> {
  return { request_bodies: requestBodies.slabs.stats(), frames: framePayloads.slabs.stats() };
}
