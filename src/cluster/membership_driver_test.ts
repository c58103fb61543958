import assert from "node:assert/strict";
import { systemClock } from "../common/clock.ts";
import { EventBus } from "../telemetry/events.ts";
import { silentLogger } from "../telemetry/log.ts";
import { MembershipDriver } from "./membership_driver.ts";
import type { DialResult } from "./tcp_transport.ts";
import { PeerTransportBase } from "./transport.ts";

/** Records dials; "connects" by answering ok and marking the peer up. */
class DialRecorder extends PeerTransportBase {
  readonly nodeId = "n1";
  readonly dials: number[] = [];
  #connected = new Set<string>();

  send(): boolean {
    return true;
  }

  connectedPeers(): string[] {
    return [...this.#connected];
  }

  dial(_address: string): Promise<DialResult> {
    this.dials.push(performance.now());
    this.#connected.add("n2");
    this.notifyPeerUp("n2");
    return Promise.resolve({ ok: true, peerId: "n2" });
  }

  lose(peerId: string): void {
    this.#connected.delete(peerId);
    this.notifyPeerDown(peerId);
  }
}

Deno.test("MembershipDriver redials a lost link at its next tick, not half a heartbeat later", async () => {
  const transport = new DialRecorder();
  const heartbeatIntervalMs = 2_000; // ticks every 200 ms; other dialing every 1,000 ms
  const driver = new MembershipDriver({
    transport,
    self: { id: "n1", address: "127.0.0.1:1", httpAddress: "" },
    incarnation: 1,
    known: [{ id: "n2", address: "127.0.0.1:2", httpAddress: "" }],
    seeds: [],
    heartbeatIntervalMs,
    suspectAfterMs: 2 * heartbeatIntervalMs,
    downAfterMs: 3 * heartbeatIntervalMs,
    detector: "swim",
    clock: systemClock,
    events: new EventBus(),
    logger: silentLogger,
    persist: () => Promise.resolve(),
  });
  try {
    driver.start();
    // The remembered member is dialed at start.
    for (let i = 0; i < 50 && transport.dials.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(transport.dials.length, 1);
    // Lost right after that dial: the next dialing round would be about 1 s away.
    const lost = performance.now();
    transport.lose("n2");
    for (let i = 0; i < 100 && transport.dials.length === 1; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(transport.dials.length, 2);
    const afterMs = transport.dials[1] - lost;
    assert.ok(afterMs < 600, `redialed ${Math.round(afterMs)} ms after the link was lost`);
  } finally {
    driver.stop();
  }
});
