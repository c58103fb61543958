import assert from "node:assert/strict";
import { PhiAccrualDetector, phiOf, TimeoutDetector } from "./failure_detector.ts";

const TIMINGS = { heartbeatIntervalMs: 100, suspectAfterMs: 300, downAfterMs: 500 };

Deno.test("TimeoutDetector: alive, then suspect at the suspect bound, down at the down bound", () => {
  const d = new TimeoutDetector(TIMINGS);
  d.heard("m", 1000);
  assert.equal(d.verdict("m", 1299), "alive");
  assert.equal(d.verdict("m", 1300), "suspect");
  assert.equal(d.verdict("m", 1500), "down");
  d.heard("m", 900); // older evidence never moves the clock back
  assert.equal(d.lastHeardMs("m"), 1000);
  assert.equal(d.verdict("unknown", 0), "alive");
});

Deno.test("phiOf() grows with silence", () => {
  let last = -1;
  for (let t = 0; t <= 400; t += 20) {
    const phi = phiOf(t, 200, 10);
    assert.ok(phi >= last, `phi(${t}) = ${phi} < ${last}`);
    last = phi;
  }
  assert.ok(phiOf(100, 200, 10) < 1);
  assert.ok(phiOf(300, 200, 10) > 8);
});

Deno.test("PhiAccrualDetector: steady heartbeats make suspicion come after one missed beat; down stays at the bound", () => {
  const d = new PhiAccrualDetector(TIMINGS);
  for (let t = 0; t <= 2000; t += 100) d.sample("m", t);
  assert.equal(d.verdict("m", 2150), "alive");
  const suspectAt = [...Array(300).keys()].map((i) => 2000 + i).find((t) =>
    d.verdict("m", t) !== "alive"
  )!;
  assert.ok(suspectAt > 2200 && suspectAt < 2300, `suspect at ${suspectAt}`);
  assert.equal(d.verdict("m", 2500), "down");
  // A jittery link is suspected later than a steady one.
  const jittery = new PhiAccrualDetector(TIMINGS);
  let t = 0;
  for (let i = 0; i < 20; i++) jittery.sample("m", t += i % 2 === 0 ? 40 : 160);
  const jitterySuspectAt =
    [...Array(1000).keys()].map((i) => t + i).find((x) => jittery.verdict("m", x) !== "alive")! - t;
  assert.ok(jitterySuspectAt > suspectAt - 2000, `${jitterySuspectAt} vs ${suspectAt - 2000}`);
});
