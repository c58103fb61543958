import assert from "node:assert/strict";
import { Random } from "../common/random.ts";
import { Membership, MESSAGE, parseMessage } from "./membership.ts";

const TIMINGS = { heartbeatIntervalMs: 100, suspectAfterMs: 300, downAfterMs: 500 };

function make(id: string, nowMs = 0, incarnation = 1): Membership {
  return new Membership({
    self: { id, address: `${id}:1`, httpAddress: `${id}:2`, incarnation },
    ...TIMINGS,
    random: new Random(1),
    nowMs,
  });
}

/** Delivers every queued message between the given memberships (by id) until quiet. */
function pump(
  nodes: Membership[],
  nowMs: number,
  drop: (to: string, type: string) => boolean = () => false,
): void {
  const byId = new Map(nodes.map((n) => [n.selfId, n]));
  for (let round = 0; round < 20; round++) {
    let moved = false;
    for (const n of nodes) {
      for (const e of n.drain().send) {
        const target = byId.get(e.to);
        if (!target || drop(e.to, e.type)) continue;
        target.receive(n.selfId, e.type, structuredClone(e.body), nowMs);
        moved = true;
      }
    }
    if (!moved) return;
  }
}

function connect(a: Membership, b: Membership, nowMs: number): void {
  a.onPeerUp(b.selfId, nowMs);
  b.onPeerUp(a.selfId, nowMs);
  pump([a, b], nowMs);
}

Deno.test("Membership: full-state exchange on connect makes both sides list each other up", () => {
  const a = make("a");
  const b = make("b");
  connect(a, b, 0);
  assert.equal(a.member("b")?.state, "up");
  assert.equal(b.member("a")?.state, "up");
  assert.equal(a.member("b")?.httpAddress, "b:2");
});

Deno.test("Membership: a silent member goes suspect, then down, then refutes and is up with a higher incarnation", () => {
  const a = make("a");
  const b = make("b");
  connect(a, b, 0);
  a.drain();
  const events: string[] = [];
  for (let t = 0; t <= 600; t += 10) {
    a.tick(t);
    events.push(...a.drain().events.map((e) => `${e.nodeId}:${e.kind}`));
  }
  assert.deepEqual(events, ["b:suspect", "b:down"]);
  // b comes back and talks to a: a tells it that it is down, b refutes.
  b.tick(610);
  pump([a, b], 610);
  assert.equal(a.member("b")?.state, "up");
  assert.equal(b.incarnation, 2);
  assert.equal(a.member("b")?.incarnation, 2);
});

Deno.test("Membership: an update about a member is applied only if newer (incarnation, then left > down > suspect > alive)", () => {
  const a = make("a");
  const b = make("b");
  connect(a, b, 0);
  const send = (kind: number, incarnation: number) =>
    a.receive("b", MESSAGE.ping, { s: 1, i: 1, g: [[kind, "c", incarnation, "c:1", "c:2"]] }, 0);
  send(0, 3);
  assert.deepEqual([a.member("c")?.state, a.member("c")?.incarnation], ["up", 3]);
  send(1, 2); // older suspect: ignored
  assert.equal(a.member("c")?.state, "up");
  send(1, 3);
  assert.equal(a.member("c")?.state, "suspect");
  send(0, 3); // alive at the same incarnation does not clear a suspicion
  assert.equal(a.member("c")?.state, "suspect");
  send(2, 3);
  assert.equal(a.member("c")?.state, "down");
  send(0, 4);
  assert.equal(a.member("c")?.state, "up");
  send(3, 4);
  assert.equal(a.member("c")?.state, "left");
  send(1, 4);
  assert.equal(a.member("c")?.state, "left");
});

Deno.test("Membership.memberIds() is one array until a member joins, changes state or leaves", () => {
  const a = make("a");
  const b = make("b");
  const first = a.memberIds();
  assert.deepEqual(first, ["a"]);
  assert.equal(a.memberIds(), first, "nothing changed: the same array");
  connect(a, b, 0);
  const two = a.memberIds();
  assert.deepEqual(two, ["a", "b"]);
  const send = (kind: number, incarnation: number) =>
    a.receive("b", MESSAGE.ping, { s: 1, i: 1, g: [[kind, "c", incarnation, "c:1", "c:2"]] }, 0);
  send(0, 1);
  const three = a.memberIds();
  assert.deepEqual(three, ["a", "b", "c"]);
  assert.notEqual(three, two);
  send(2, 1); // down: still counted (a quorum counts down members)
  assert.deepEqual(a.memberIds(), ["a", "b", "c"]);
  send(3, 1);
  assert.deepEqual(a.memberIds(), ["a", "b"], "a member that left is not counted");
});

Deno.test("Membership: leave() announces left to every live member and completes once they ack", () => {
  const a = make("a");
  const b = make("b");
  const c = make("c");
  connect(a, b, 0);
  connect(a, c, 0);
  connect(b, c, 0);
  a.leave(10);
  assert.equal(a.leaveAcknowledged(), false);
  pump([a, b, c], 10);
  assert.equal(a.leaveAcknowledged(), true);
  assert.equal(b.member("a")?.state, "left");
  assert.equal(c.member("a")?.state, "left");
  // A member that left is never suspected or declared down afterwards.
  for (let t = 10; t < 2000; t += 10) {
    b.tick(t);
    c.tick(t);
    pump([b, c], t);
  }
  assert.equal(b.member("a")?.state, "left");
  assert.equal(b.member("c")?.state, "up");
});

Deno.test("Membership.remove() marks a down member left and refuses an up one", () => {
  const a = make("a");
  const b = make("b");
  connect(a, b, 0);
  assert.equal(a.remove("b", 0), "is_up");
  assert.equal(a.remove("a", 0), "is_self");
  assert.equal(a.remove("zz", 0), "not_found");
  for (let t = 0; t <= 600; t += 10) a.tick(t);
  assert.equal(a.member("b")?.state, "down");
  assert.equal(a.remove("b", 600), "removed");
  assert.equal(a.member("b")?.state, "left");
});

Deno.test("Membership: a long pause of this node does not make it suspect others", () => {
  const a = make("a");
  const b = make("b");
  connect(a, b, 0);
  a.tick(0);
  a.drain();
  a.tick(5000); // the process was stopped for 5 s
  assert.equal(a.member("b")?.state, "up");
  assert.deepEqual(a.drain().events, []);
});

Deno.test("Membership: malformed messages are counted and change nothing", () => {
  const a = make("a");
  const bad: [string, unknown][] = [
    [MESSAGE.ping, null],
    [MESSAGE.ping, []],
    [MESSAGE.ping, { s: 1, i: -1, g: [] }],
    [MESSAGE.ping, { s: "1", i: 1, g: [] }],
    [MESSAGE.ping, { s: 1, i: 1, g: [[9, "x", 1, "", ""]] }],
    [MESSAGE.ping, { s: 1, i: 1, g: [[0, "", 1, "", ""]] }],
    [MESSAGE.ping, { s: 1, i: 1, g: Array(17).fill([0, "x", 1, "", ""]) }],
    [MESSAGE.ack, { s: 1, i: 1, g: [], v: 5 }],
    [MESSAGE.pingReq, { s: 1, i: 1, g: [] }],
    [MESSAGE.sync, { i: 1, m: [[0, "x", 1.5, "", ""]], r: true }],
    ["cluster.nope", { s: 1, i: 1, g: [] }],
  ];
  for (const [type, body] of bad) {
    assert.equal(a.receive("b", type, body, 0), false, JSON.stringify([type, body]));
    assert.equal(parseMessage(type, body), undefined);
  }
  assert.equal(a.malformedCount, bad.length);
  assert.deepEqual(a.members().map((m) => m.id), ["a"]);
  assert.deepEqual(a.drain(), { send: [], events: [], heartbeats: [] });
});

Deno.test("Membership: acks of probes report the round-trip time", () => {
  const a = make("a");
  const b = make("b");
  connect(a, b, 0);
  a.drain();
  a.tick(100);
  const pings = a.drain().send.filter((e) => e.type === MESSAGE.ping);
  assert.equal(pings.length, 1);
  b.receive("a", MESSAGE.ping, pings[0].body, 104);
  const ack = b.drain().send.find((e) => e.type === MESSAGE.ack)!;
  a.receive("b", MESSAGE.ack, ack.body, 107);
  assert.deepEqual(a.drain().heartbeats, [{ rttMs: 7, fromNode: "a", toNode: "b" }]);
});
