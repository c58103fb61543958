import assert from "node:assert/strict";
import { runInSteps } from "./event_loop.ts";

Deno.test("runInSteps() steps until done, with timers running between steps, within its bound", async () => {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 0);
  try {
    let calls = 0;
    assert.equal(await runInSteps(() => ++calls === 4), true);
    assert.equal(calls, 4);
    assert.ok(ticks >= 2, `timers ran ${ticks} times between the steps`);
    let bounded = 0;
    assert.equal(await runInSteps(() => (++bounded, false), 3), false);
    assert.equal(bounded, 3, "no more calls than the bound");
    let once = 0;
    assert.equal(await runInSteps(() => ++once > 0, 1), true);
    assert.equal(once, 1);
  } finally {
    clearInterval(timer);
  }
});
