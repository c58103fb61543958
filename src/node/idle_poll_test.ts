import assert from "node:assert/strict";
import { IdlePoller } from "./idle_poll.ts";

const SCHED_IDLE = 5;

/** This process's threads whose scheduling policy is SCHED_IDLE, with their CPU ticks. */
function idleThreads(): { tid: string; ticks: number }[] {
  const found: { tid: string; ticks: number }[] = [];
  for (const task of Deno.readDirSync("/proc/self/task")) {
    let stat: string;
    try {
      stat = Deno.readTextFileSync(`/proc/self/task/${task.name}/stat`);
    } catch {
      continue; // a thread that ended meanwhile
    }
    // Fields after the command's closing parenthesis, from field 3 (state) on.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(fields[41 - 3]) === SCHED_IDLE) {
      found.push({ tid: task.name, ticks: Number(fields[14 - 3]) + Number(fields[15 - 3]) });
    }
  }
  return found;
}

async function until(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const started = performance.now();
  while (!condition()) {
    if (performance.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

Deno.test({
  name:
    "IdlePoller: a poller thread at SCHED_IDLE parks a window after the last touch and wakes at the next",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const problems: string[] = [];
    const poller = await IdlePoller.start({
      windowMicros: 200_000,
      onUnavailable: (reason) => problems.push(reason),
    });
    try {
      assert.deepEqual(problems, []);
      assert.equal(poller.running, true);
      const [thread, ...others] = idleThreads();
      assert.ok(thread !== undefined, "no thread of this process runs at SCHED_IDLE");
      assert.deepEqual(others, []);
      // No touch since it started: parked after its window.
      await until("the poller to park", () => poller.parked);
      // Parked means waiting on a futex: no CPU taken while nothing touches it.
      const before = idleThreads()[0].ticks;
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.ok(idleThreads()[0].ticks - before <= 1, "a parked poller kept running");
      // A touch wakes it, and it parks again a window after the touches stop.
      poller.touch();
      await until("the poller to wake", () => !poller.parked);
      for (let i = 0; i < 10; i++) poller.touch();
      await until("the poller to park again", () => poller.parked);
    } finally {
      poller.stop();
    }
    assert.equal(poller.running, false);
    poller.touch(); // after stop: a no-op, no throw
  },
});

Deno.test("IdlePoller: without the C library no poller runs, the reason is told once, touch is a no-op", async () => {
  const problems: string[] = [];
  const poller = await IdlePoller.start({
    windowMicros: 1_000,
    onUnavailable: (reason) => problems.push(reason),
    libcNames: ["libshanghai-missing.so.0"],
  });
  assert.equal(poller.running, false);
  assert.equal(problems.length, 1);
  assert.match(problems[0], Deno.build.os === "linux" ? /libshanghai-missing\.so\.0/ : /Linux/);
  poller.touch();
  poller.stop();
});

Deno.test("IdlePoller: a window of 0 starts nothing and reports nothing", async () => {
  const problems: string[] = [];
  const poller = await IdlePoller.start({
    windowMicros: 0,
    onUnavailable: (reason) => problems.push(reason),
  });
  assert.equal(poller.running, false);
  assert.deepEqual(problems, []);
  poller.touch();
  poller.stop();
});
