import assert from "node:assert/strict";
import { PrefaultedSlabs, type SlabMaker, WorkerSlabMaker } from "./prefaulted_slabs.ts";

/** A maker whose slabs arrive when the test says (each request's resolvers, in order). */
function heldMaker(): {
  make: SlabMaker;
  requests: { bytes: number; answer: PromiseWithResolvers<Uint8Array<ArrayBuffer>> }[];
} {
  const requests: { bytes: number; answer: PromiseWithResolvers<Uint8Array<ArrayBuffer>> }[] = [];
  return {
    requests,
    make: (bytes) => {
      const answer = Promise.withResolvers<Uint8Array<ArrayBuffer>>();
      requests.push({ bytes, answer });
      return answer.promise;
    },
  };
}

Deno.test("PrefaultedSlabs hands out made slabs once they arrive, allocates while none is ready, and keeps readyMax asked for", async () => {
  const pool = new PrefaultedSlabs(4096);
  const maker = heldMaker();
  pool.keepReady(2, maker.make);
  assert.deepEqual(maker.requests.map((r) => r.bytes), [4096, 4096], "both asked for at once");

  // Nothing has arrived: a slab allocated here, and no third request (two are being made).
  const fresh = pool.take();
  assert.equal(fresh.length, 4096);
  assert.ok(fresh.every((byte) => byte === 0));
  assert.equal(maker.requests.length, 2);
  assert.deepEqual(pool.stats(), { prefaulted: 0, fresh: 1, ready: 0 });

  const made = [new Uint8Array(4096), new Uint8Array(4096)];
  maker.requests[0].answer.resolve(made[0]);
  maker.requests[1].answer.resolve(made[1]);
  await pool.idle();
  assert.equal(pool.stats().ready, 2);

  const taken = pool.take();
  assert.ok(made.includes(taken), "a made slab, not a new one");
  assert.equal(maker.requests.length, 3, "the taken one is asked for again");
  assert.deepEqual(pool.stats(), { prefaulted: 1, fresh: 1, ready: 1 });

  // Turned off: the ready slab goes, a slab arriving late is not kept, and no more are asked for.
  pool.keepReady(0, undefined);
  maker.requests[2].answer.resolve(new Uint8Array(4096));
  await pool.idle();
  assert.equal(pool.stats().ready, 0);
  assert.notEqual(pool.take(), made[0]);
  assert.equal(maker.requests.length, 3);
});

Deno.test("PrefaultedSlabs allocates its own slabs for good once its maker fails", async () => {
  const pool = new PrefaultedSlabs(1024);
  const maker = heldMaker();
  pool.keepReady(1, maker.make);
  maker.requests[0].answer.reject(new Error("the slab maker stopped"));
  await pool.idle();
  const slab = pool.take();
  assert.equal(slab.length, 1024);
  assert.equal(maker.requests.length, 1, "nothing more asked of a failed maker");
  assert.deepEqual(pool.stats(), { prefaulted: 0, fresh: 1, ready: 0 });
});

Deno.test("WorkerSlabMaker makes zeroed slabs on its own thread and transfers them; refuses once stopped", async () => {
  const started = WorkerSlabMaker.start();
  assert.ok(!("problem" in started), "problem" in started ? started.problem : "");
  const maker = started as WorkerSlabMaker;
  try {
    const slabs = await Promise.all([maker.make(1 << 20), maker.make(64 * 1024)]);
    assert.deepEqual(slabs.map((s) => s.length), [1 << 20, 64 * 1024]);
    for (const slab of slabs) {
      assert.equal(slab.buffer.byteLength, slab.length, "a buffer of its own");
      assert.ok(slab.every((byte) => byte === 0));
      slab.fill(5); // ours to write: transferred, not shared
      assert.equal(slab[slab.length - 1], 5);
    }
    const pending = maker.make(4096);
    maker.stop();
    await assert.rejects(pending, /slab maker stopped/);
    await assert.rejects(maker.make(4096), /slab maker stopped/);
  } finally {
    maker.stop();
  }
});
