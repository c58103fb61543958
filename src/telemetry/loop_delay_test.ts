import assert from "node:assert/strict";
import { systemClock } from "../common/clock.ts";
import { LoopDelaySampler, startLoopDelaySampler } from "./loop_delay.ts";

Deno.test("LoopDelaySampler: a firing on time is 0 late, a late one counts from when it was due", () => {
  const sampler = new LoopDelaySampler(100, 1_000);
  // Due at 1,100: a firing then is on time.
  assert.equal(sampler.fired(1_100), 0);
  // The next is due an interval after the last firing (1,200): 75 ms late at 1,275.
  assert.equal(sampler.fired(1_275), 75);
  // Due at 1,375, not on a fixed grid (1,300): a firing at 1,375 is on time.
  assert.equal(sampler.fired(1_375), 0);
  // A timer never fires early in practice; if the clock says so, it is not a negative delay,
  // and the next firing is still due an interval after this one (1,470 + 100).
  assert.equal(sampler.fired(1_470), 0);
  assert.equal(sampler.fired(1_600), 30);
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
