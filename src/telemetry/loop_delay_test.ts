import assert from "node:assert/strict";
import { systemClock } from "../common/clock.ts";
import { LoopDelaySampler, startLoopDelaySampler } from "./loop_delay.ts";

Deno.test("LoopDelaySampler: a firing on time is 0 late, a late one counts from when it was due", () => {
  const sampler = new LoopDelaySampler(100, 1_000);
  assert.equal(sampler.dueMs, 1_100);
  assert.equal(sampler.fired(1_100), 0);
  // The next firing is due an interval after this one, not on a fixed grid.
  assert.equal(sampler.dueMs, 1_200);
  assert.equal(sampler.fired(1_275), 75);
  assert.equal(sampler.dueMs, 1_375);
  // A timer never fires early in practice; if the clock says so, it is not a negative delay.
  assert.equal(sampler.fired(1_370), 0);
});

Deno.test("startLoopDelaySampler: a blocked event loop shows as one late firing, and stop() ends it", async () => {
  const delays: number[] = [];
  const stop = startLoopDelaySampler(systemClock, 10, (delayMs) => delays.push(delayMs));
  try {
    // Let it fire a few times, then hold the event loop for 120 ms.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const blockedUntil = performance.now() + 120;
    while (performance.now() < blockedUntil) { /* the event loop stands still */ }
    await new Promise((resolve) => setTimeout(resolve, 50));
  } finally {
    stop();
  }
  assert.ok(delays.length >= 3, `only ${delays.length} firings`);
  // The firing due during the block came at least 100 ms late (120 ms block, 10 ms interval).
  assert.ok(Math.max(...delays) >= 100, `largest delay ${Math.max(...delays)} ms`);
  const count = delays.length;
  await new Promise((resolve) => setTimeout(resolve, 40));
  assert.equal(delays.length, count, "fired after stop()");
});
