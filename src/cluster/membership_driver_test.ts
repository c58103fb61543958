import assert from "node:assert/strict";
import { systemClock } from "../common/clock.ts";
import { EventBus } from "../telemetry/events.ts";
import { silentLogger } from "../telemetry/log.ts";
import { MembershipDriver } from "./membership_driver.ts";
import type { DialResult } from "./tcp_transport.ts";
import { MESSAGE } from "./membership.ts";
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

/**
 * A seed at "127.0.0.1:2" (node n2, whose cluster also holds n3): a dial answers after
 * `dialMs`; a full-state sync request gets n2's list back after `syncMs`.
 */
class SlowSeed extends PeerTransportBase {
  readonly nodeId = "n1";
  readonly dials: string[] = [];
  #connected = new Set<string>();
  constructor(readonly dialMs: number, readonly syncMs: number) {
    super();
  }

  send(peerId: string, type: string, body: unknown): boolean {
    if (type === MESSAGE.sync && (body as { r: boolean }).r) {
      const list = [[0, "n2", 1, "127.0.0.1:2", ""], [0, "n3", 1, "127.0.0.1:3", ""]];
      setTimeout(
        () => this.handlerFor(MESSAGE.sync)?.(peerId, { i: 1, m: list, r: false }),
        this.syncMs,
      );
    }
    return true;
  }

  connectedPeers(): string[] {
    return [...this.#connected];
  }

  async dial(address: string): Promise<DialResult> {
    this.dials.push(address);
    await new Promise((r) => setTimeout(r, this.dialMs));
    this.#connected.add("n2");
    this.notifyPeerUp("n2");
    return { ok: true, peerId: "n2" };
  }
}

function joiningDriver(transport: SlowSeed, joining: boolean): MembershipDriver {
  // Housekeeping (which redials seeds while no member is known) every 500 ms: the test's
  // dials are the first tick's and the join's.
  const heartbeatIntervalMs = 1_000;
  return new MembershipDriver({
    transport,
    self: { id: "n1", address: "127.0.0.1:1", httpAddress: "" },
    incarnation: 1,
    known: [],
    seeds: [{ address: "127.0.0.1:2" }],
    heartbeatIntervalMs,
    suspectAfterMs: 6 * heartbeatIntervalMs,
    downAfterMs: 10 * heartbeatIntervalMs,
    detector: "swim",
    clock: systemClock,
    events: new EventBus(),
    logger: silentLogger,
    persist: () => Promise.resolve(),
    joining,
  });
}

Deno.test("MembershipDriver: a join waits for the seed's member list, over the one dial the first tick started", async () => {
  const transport = new SlowSeed(30, 40);
  const driver = joiningDriver(transport, true);
  try {
    driver.start(); // the first tick dials the seed
    assert.equal(driver.joined(), false, "a fresh node joining knows no members yet");
    const [answer] = await driver.joinSeeds();
    assert.deepEqual(answer.result, { ok: true, peerId: "n2" });
    assert.deepEqual(
      transport.dials.filter((address) => address === "127.0.0.1:2"),
      ["127.0.0.1:2"],
      "the join waited for the tick's dial instead of racing it",
    );
    assert.deepEqual(driver.memberIds(), ["n1", "n2", "n3"], "the seed's list arrived first");
    assert.equal(driver.joined(), true);
  } finally {
    driver.stop();
  }
});

Deno.test("MembershipDriver: only a node started joining waits to know its members", () => {
  const driver = joiningDriver(new SlowSeed(30, 40), false);
  assert.equal(driver.joined(), true, "a node with data or remembered members knows its quorum");
});
