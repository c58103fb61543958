/**
 * Slabs whose pages another thread has already touched, for the buffers a node keeps values in
 * (value_slab.ts): request bodies, and the replication frames whose values a follower keeps
 * where they arrived.
 *
 * Why: on our machines the first touch of a fresh 4 KiB page costs about 11 µs (PVM guests with
 * shadow page tables: a guest fault plus the hypervisor's; docs/BENCHMARKS.md, session 41), so
 * every KiB of values a node takes in cost its one JavaScript thread about 3 µs before anything
 * was written to it. A catching-up follower spent about a third of its thread's time in page
 * faults, most of them on the buffers its frames arrived in. A page touched first by another
 * thread costs this one nothing more (the mapping is the process's, not the thread's): 100
 * slabs of 1 MiB made and touched by a Worker and transferred here took 6-8 ms and no faults to
 * fill, against 255-300 ms and 22,000-25,000 faults for slabs allocated and first touched here
 * (session 42).
 *
 * How: the event loop allocates each slab and transfers it to a Worker (its code embedded here
 * as text: a compiled binary has no source tree), which writes a zero to each of its pages and
 * transfers it back; a transfer moves the memory without copying it. The memory stays V8's like
 * any other buffer's, counted and freed by its collector. A slab is handed out only once it is
 * back, so nothing ever writes memory that both threads can see. With no slab ready (or no
 * Worker), {@link PrefaultedSlabs.take} allocates one here as before: this changes which thread
 * pays for the faults, never what a slab holds. At most `readyMax` slabs per pool are ready or
 * being made, so a pool holds at most `readyMax` slabs beyond what is in use.
 *
 * @module
 */

/** Makes a slab of `bytes` zero bytes whose pages another thread has touched. */
export type SlabMaker = (bytes: number) => Promise<Uint8Array<ArrayBuffer>>;

/** The Worker's code: touches each buffer it is sent and sends it back, transferred both ways. */
const MAKER_SOURCE = `
const PAGE_BYTES = 4096;
self.onmessage = (event) => {
  const { id, buffer } = event.data;
  const view = new Uint8Array(buffer);
  for (let at = 0; at < view.length; at += PAGE_BYTES) view[at] = 0;
  self.postMessage({ id, buffer }, [buffer]);
};
`;

/** A Worker that makes touched slabs ({@link SlabMaker}) until stopped. */
export class WorkerSlabMaker {
  readonly #worker: Worker;
  readonly #waiting = new Map<number, PromiseWithResolvers<Uint8Array<ArrayBuffer>>>();
  #nextId = 0;
  #failure: Error | undefined;

  private constructor(worker: Worker) {
    this.#worker = worker;
    worker.onmessage = (event: MessageEvent<{ id: number; buffer: ArrayBuffer }>) => {
      const { id, buffer } = event.data;
      const waiting = this.#waiting.get(id);
      this.#waiting.delete(id);
      waiting?.resolve(new Uint8Array(buffer));
    };
    worker.onerror = (event) => {
      event.preventDefault();
      this.#fail(new Error(`the slab maker failed: ${event.message}`));
    };
  }

  /** Starts the Worker, or says why it cannot run here. */
  static start(): WorkerSlabMaker | { problem: string } {
    const url = URL.createObjectURL(new Blob([MAKER_SOURCE], { type: "text/javascript" }));
    try {
      return new WorkerSlabMaker(new Worker(url, { type: "module", name: "slab-maker" }));
    } catch (error) {
      return { problem: `cannot start the slab maker: ${(error as Error).message}` };
    } finally {
      URL.revokeObjectURL(url);
    }
  }

  /**
   * The {@link SlabMaker}: rejects once the Worker failed or stopped. The buffer is allocated
   * here and only touched there: V8 then counts it as this isolate's allocation (one arriving
   * from another isolate skips the check that collects garbage before external memory grows
   * further) and malloc takes it from, and frees it to, the event loop's own arena. With buffers
   * the Worker allocated, a stalled follower's leaders grew 15 MiB more (median of three) and a
   * loop keeping 50 slabs live ran 70-100 MiB larger (session 42).
   */
  readonly make: SlabMaker = (bytes) => {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    const id = this.#nextId++;
    const waiting = Promise.withResolvers<Uint8Array<ArrayBuffer>>();
    this.#waiting.set(id, waiting);
    const buffer = new ArrayBuffer(bytes);
    this.#worker.postMessage({ id, buffer }, [buffer]);
    return waiting.promise;
  };

  /** Ends the Worker; slabs still being made are refused. */
  stop(): void {
    if (this.#failure !== undefined) return;
    this.#fail(new Error("the slab maker stopped"));
  }

  #fail(error: Error): void {
    this.#failure = error;
    this.#worker.terminate();
    for (const waiting of this.#waiting.values()) waiting.reject(error);
    this.#waiting.clear();
  }
}

/** What a pool handed out, for the `shanghai_memory_slabs_*` counters. */
export interface PrefaultedSlabStats {
  /** Slabs handed out that another thread had touched. */
  prefaulted: number;
  /** Slabs allocated here because none was ready. */
  fresh: number;
  /** Slabs ready now. */
  ready: number;
}

/** Slabs of one size, kept ready by a {@link SlabMaker}. */
export class PrefaultedSlabs {
  readonly slabBytes: number;
  #readyMax = 0;
  #make: SlabMaker | undefined;
  readonly #ready: Uint8Array<ArrayBuffer>[] = [];
  readonly #making = new Set<Promise<void>>();
  #prefaulted = 0;
  #fresh = 0;

  constructor(slabBytes: number) {
    this.slabBytes = slabBytes;
  }

  /**
   * Keeps up to `readyMax` touched slabs ready or being made from now on, made by `make`; 0 (or
   * no maker) stops refilling and lets the ready slabs go.
   */
  keepReady(readyMax: number, make: SlabMaker | undefined): void {
    this.#readyMax = make === undefined ? 0 : readyMax;
    this.#make = make;
    if (this.#readyMax === 0) this.#ready.length = 0;
    this.#refill();
  }

  /** A slab of `slabBytes` zero bytes: a touched one when ready, else one allocated here. */
  take(): Uint8Array<ArrayBuffer> {
    const slab = this.#ready.pop();
    if (slab === undefined) this.#fresh++;
    else this.#prefaulted++;
    this.#refill();
    return slab ?? new Uint8Array(this.slabBytes);
  }

  /** Resolves once no slab is being made (a node's stop waits for it). */
  async idle(): Promise<void> {
    while (this.#making.size > 0) await Promise.all(this.#making);
  }

  stats(): PrefaultedSlabStats {
    return { prefaulted: this.#prefaulted, fresh: this.#fresh, ready: this.#ready.length };
  }

  /**
   * Asks for slabs until `readyMax` are ready or being made. All at once: the maker works
   * through them while this thread is busy, where asking for one when the last arrived left
   * the maker waiting on this thread's turns, and a catch-up's burst took fresh slabs.
   */
  #refill(): void {
    const make = this.#make;
    if (make === undefined) return;
    while (this.#ready.length + this.#making.size < this.#readyMax) {
      const making: Promise<void> = make(this.slabBytes).then(
        (slab) => {
          this.#making.delete(making);
          if (this.#make === make && this.#ready.length < this.#readyMax) this.#ready.push(slab);
        },
        () => {
          // A maker that failed or stopped makes no more: allocate here until given another.
          this.#making.delete(making);
          if (this.#make === make) this.keepReady(0, undefined);
        },
      );
      this.#making.add(making);
    }
  }
}
