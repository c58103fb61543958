import assert from "node:assert/strict";
import { FakeClock } from "../common/clock.ts";
import { EventBus } from "./events.ts";
import { logEvents, ReadinessLog, SLOW_WAL_LOG_INTERVAL_MS } from "./event_log.ts";
import { createLogger } from "./log.ts";

function capture() {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    level: "info",
    format: "json",
    write: (line) => lines.push(JSON.parse(line)),
  });
  return { lines, logger };
}

Deno.test("logEvents() logs slow WAL writes once per interval, counting the rest", () => {
  const { lines, logger } = capture();
  const events = new EventBus();
  const clock = new FakeClock(0);
  const off = logEvents(events, logger, () => clock.monoMs());
  const slow = { durationMs: 80, syncMs: 70, bytes: 10, entries: 1, gatherMs: 0 };
  events.emit("wal.write.completed", { ...slow, durationMs: 5 });
  events.emit("wal.write.completed", slow);
  events.emit("wal.write.completed", slow);
  events.emit("wal.write.completed", slow);
  clock.advance(SLOW_WAL_LOG_INTERVAL_MS);
  events.emit("wal.write.completed", slow);
  off();
  events.emit("wal.write.completed", slow);
  assert.deepEqual(lines.map((l) => [l.msg, l.slowWritesNotLogged]), [["Slow WAL write", 0], [
    "Slow WAL write",
    2,
  ]]);
});

Deno.test("logEvents() logs member state changes, down as a warning", () => {
  const { lines, logger } = capture();
  const events = new EventBus();
  logEvents(events, logger, () => 0);
  events.emit("cluster.member.changed", { nodeId: "n2", state: "down", previous: "suspect" });
  events.emit("cluster.member.changed", { nodeId: "n2", state: "up", previous: "down" });
  assert.deepEqual(lines.map((l) => [l.level, l.nodeId, l.state]), [["warn", "n2", "down"], [
    "info",
    "n2",
    "up",
  ]]);
});

Deno.test("ReadinessLog logs transitions only", () => {
  const { lines, logger } = capture();
  const log = new ReadinessLog(logger);
  log.observe({ ready: true, reasons: [] });
  log.observe({ ready: false, reasons: ["disk"] });
  log.observe({ ready: false, reasons: ["disk"] });
  log.observe({ ready: true, reasons: [] });
  assert.deepEqual(lines.map((l) => l.msg), ["Node not ready", "Node ready again"]);
});

Deno.test("the logger keeps secrets out and every event on one line", () => {
  const out: string[] = [];
  for (const format of ["json", "text"] as const) {
    const logger = createLogger({ format, write: (line) => out.push(line) });
    logger.info("two\nlines", {
      password: "hunter2",
      apiKey: "k",
      endpoint: "http://user:pw@collector:4318/v1/metrics",
      ok: 1,
    });
  }
  for (const line of out) {
    assert.ok(!line.includes("\n"), line);
    assert.ok(!line.includes("hunter2") && !line.includes("user:pw"), line);
    assert.ok(line.includes("[redacted]"));
  }
  assert.equal(JSON.parse(out[0]).endpoint, "http://[redacted]@collector:4318/v1/metrics");
});
