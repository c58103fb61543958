import assert from "node:assert/strict";
import { Encoder } from "cbor-x";
import { crc32 } from "../common/crc32.ts";
import { createLogger } from "../telemetry/log.ts";
import { transportContract } from "../../tests/support/transport_contract.ts";
import { encodeFrame, FrameDecoder } from "./frame.ts";
import { reconcileClusters, TcpTransport, type TcpTransportOptions } from "./tcp_transport.ts";

interface Made {
  transport: TcpTransport;
  logs: string[];
  state: { cluster: string; fresh: boolean };
}

function make(
  nodeId: string,
  cluster = "c1",
  fresh = false,
  extra: Partial<TcpTransportOptions> = {},
): Made {
  const logs: string[] = [];
  const state = { cluster, fresh };
  const transport = TcpTransport.listen({
    nodeId,
    clusterId: () => state.cluster,
    fresh: () => state.fresh,
    adoptClusterId: (id) => {
      state.cluster = id;
      return Promise.resolve();
    },
    hostname: "127.0.0.1",
    port: 0,
    httpAddress: () => "127.0.0.1:1",
    logger: createLogger({ level: "debug", format: "json", write: (line) => logs.push(line) }),
    ...extra,
  });
  return { transport, logs, state };
}

const tick = () => new Promise<void>((r) => setTimeout(r, 5));

transportContract("TcpTransport", () => {
  const a = make("a").transport;
  const b = make("b").transport;
  return Promise.resolve({
    a,
    b,
    connect: async () => {
      const result = await a.dial(b.address);
      assert.ok(result.ok, JSON.stringify(result));
    },
    dropB: () => {
      b.close();
      return Promise.resolve();
    },
    settle: tick,
    cleanup: () => {
      a.close();
      b.close();
      return Promise.resolve();
    },
  });
});

async function rawExchange(
  port: number,
  bytes: Uint8Array,
  waitMs = 300,
): Promise<{ closed: boolean; frames: { type: string; body: unknown }[] }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(bytes);
  const decoder = new FrameDecoder();
  const frames: { type: string; body: unknown }[] = [];
  const buf = new Uint8Array(65536);
  let closed = false;
  const deadline = Date.now() + waitMs;
  try {
    while (Date.now() < deadline) {
      const n = await Promise.race([
        conn.read(buf),
        new Promise<"wait">((r) => setTimeout(() => r("wait"), deadline - Date.now())),
      ]);
      if (n === "wait") break;
      if (n === null) {
        closed = true;
        break;
      }
      frames.push(...decoder.push(buf.slice(0, n)));
    }
  } catch {
    closed = true;
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
  return { closed, frames };
}

/** Asserts that `a`, after refusing or dropping bad connections, still lets a proper peer in. */
async function assertStillServing(a: TcpTransport): Promise<void> {
  const b = make("b");
  try {
    assert.deepEqual(await b.transport.dial(a.address), { ok: true, peerId: a.nodeId });
  } finally {
    b.transport.close();
  }
}

function hello(overrides: Record<string, unknown> = {}) {
  return {
    cluster: "c1",
    node: "x",
    version: 1,
    session: "s1",
    address: "127.0.0.1:9",
    http: "",
    fresh: false,
    alone: true,
    ...overrides,
  };
}

Deno.test("TcpTransport refuses other clusters, other versions and its own id, and keeps serving", async () => {
  const a = make("a");
  try {
    const port = a.transport.port;
    const otherCluster = await rawExchange(port, encodeFrame("hello", hello({ cluster: "c2" })));
    assert.equal(otherCluster.frames[0]?.type, "refuse");
    assert.equal((otherCluster.frames[0].body as { code: string }).code, "cluster");
    assert.match(
      (otherCluster.frames[0].body as { reason: string }).reason,
      /belongs to cluster c2.*it holds data or founded its cluster, this node holds data/,
    );
    assert.ok(otherCluster.closed);

    const newer = await rawExchange(
      port,
      encodeFrame("hello", hello({ version: 2 }), { version: 2 }),
    );
    assert.equal((newer.frames[0].body as { code: string }).code, "version");
    assert.match(
      (newer.frames[0].body as { reason: string }).reason,
      /version 2, this node speaks 1/,
    );

    const sameId = await rawExchange(port, encodeFrame("hello", hello({ node: "a" })));
    assert.equal((sameId.frames[0].body as { code: string }).code, "duplicate_id");

    assert.ok(a.logs.some((l) => l.includes("Refused peer") && l.includes("cluster")));
    await assertStillServing(a.transport);
  } finally {
    a.transport.close();
  }
});

Deno.test("TcpTransport closes connections sending garbage, oversize, truncated or malformed frames", async () => {
  const a = make("a", "c1", false, { handshakeTimeoutMs: 300 });
  try {
    const port = a.transport.port;
    const cbor = new Encoder({ useRecords: false, mapsAsObjects: true });
    const header = (length: number, crc: number) => {
      const h = new Uint8Array(8);
      new DataView(h.buffer).setUint32(0, length, true);
      new DataView(h.buffer).setUint32(4, crc, true);
      return h;
    };
    const payload = cbor.encode([1, "hello", hello()]);
    const badCrc = new Uint8Array([...header(payload.length, crc32(payload) ^ 1), ...payload]);
    const cases: [string, Uint8Array][] = [
      ["garbage", new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n")],
      ["random bytes", crypto.getRandomValues(new Uint8Array(1000))],
      ["oversize", header(64 * 1024 * 1024, 0)],
      ["bad crc", badCrc],
      ["truncated then silent", header(100, 0)],
      ["not a hello", encodeFrame("cluster.ping", { s: 1 })],
      ["malformed hello", encodeFrame("hello", { cluster: 5 })],
    ];
    for (const [name, bytes] of cases) {
      const result = await rawExchange(port, bytes, 1000);
      assert.ok(result.closed, `${name}: connection left open`);
    }
    assert.ok(a.logs.some((l) => l.includes("over the limit")), "oversize is logged");
    assert.ok(a.logs.some((l) => l.includes("checksum mismatch")), "bad crc is logged");
    assert.ok(a.logs.some((l) => l.includes("no handshake in time")), "timeout is logged");
    await assertStillServing(a.transport);
  } finally {
    a.transport.close();
  }
});

Deno.test("TcpTransport: a fresh node adopts the cluster id of the cluster it joins; a node with data does not", async () => {
  const seed = make("seed", "c9", false);
  const fresh = make("fresh", "c1", true);
  const full = make("full", "c2", false);
  try {
    assert.deepEqual(await fresh.transport.dial(seed.transport.address), {
      ok: true,
      peerId: "seed",
    });
    assert.equal(fresh.state.cluster, "c9");
    const refused = await full.transport.dial(seed.transport.address);
    assert.equal(refused.ok, false);
    assert.ok(!refused.ok && refused.refused && refused.code === "cluster");
    assert.equal(full.state.cluster, "c2");
  } finally {
    seed.transport.close();
    fresh.transport.close();
    full.transport.close();
  }
});

Deno.test("TcpTransport refuses a second live node with a taken id", async () => {
  const a = make("a");
  const b1 = make("b");
  const b2 = make("b");
  try {
    assert.ok((await b1.transport.dial(a.transport.address)).ok);
    const second = await b2.transport.dial(a.transport.address);
    assert.ok(
      !second.ok && second.refused && second.code === "id_in_use",
      JSON.stringify(second),
    );
    assert.match(second.ok ? "" : second.reason, /in use by a live member/);
    assert.deepEqual(a.transport.connectedPeers(), ["b"]);
  } finally {
    a.transport.close();
    b1.transport.close();
    b2.transport.close();
  }
});

Deno.test("TcpTransport keeps one connection when two nodes dial each other at once", async () => {
  const a = make("a");
  const b = make("b");
  try {
    const [x, y] = await Promise.all([
      a.transport.dial(b.transport.address),
      b.transport.dial(a.transport.address),
    ]);
    assert.ok(x.ok && y.ok);
    const got: unknown[] = [];
    b.transport.handle("t", (_f, body) => got.push(body));
    for (let i = 0; i < 50 && a.transport.stats().connections !== 1; i++) await tick();
    assert.equal(a.transport.stats().connections, 1);
    assert.equal(a.transport.send("b", "t", 1), true);
    for (let i = 0; i < 50 && got.length === 0; i++) await tick();
    assert.deepEqual(got, [1]);
  } finally {
    a.transport.close();
    b.transport.close();
  }
});

Deno.test("reconcileClusters() agrees from both sides", () => {
  const cases = [
    [{ cluster: "a", fresh: true }, { cluster: "b", fresh: true }],
    [{ cluster: "a", fresh: true, alone: false }, { cluster: "b", fresh: true, alone: true }],
    [{ cluster: "a", fresh: true, alone: true }, { cluster: "b", fresh: true, alone: true }],
    [{ cluster: "a", fresh: false }, { cluster: "b", fresh: true }],
    [{ cluster: "a", fresh: false }, { cluster: "b", fresh: false }],
    [{ cluster: "a", fresh: true }, { cluster: "a", fresh: false }],
  ];
  const mirror = {
    same: "same",
    adopt: "they_adopt",
    they_adopt: "adopt",
    refuse: "refuse",
  } as const;
  for (const [x, y] of cases) {
    assert.equal(reconcileClusters(y, x), mirror[reconcileClusters(x, y)]);
  }
  assert.equal(
    reconcileClusters({ cluster: "b", fresh: true }, { cluster: "a", fresh: true }),
    "adopt",
  );
  assert.equal(
    reconcileClusters({ cluster: "b", fresh: false }, { cluster: "a", fresh: false }),
    "refuse",
  );
  // A fresh seed that already has members keeps its id when a fresh newcomer joins, and is
  // not taken over by a node that holds data.
  const seed = { cluster: "b", fresh: true, alone: false };
  assert.equal(reconcileClusters(seed, { cluster: "a", fresh: true, alone: true }), "they_adopt");
  assert.equal(reconcileClusters(seed, { cluster: "a", fresh: false }), "refuse");
});

/**
 * A peer that completes the handshake on a raw socket and then sends nothing, as a peer
 * behind a path that started dropping packets looks from this end. `frames()` reads what
 * arrived since (until `waitMs` of quiet or the socket closes).
 */
async function silentPeer(port: number, overrides: Record<string, unknown> = {}) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(encodeFrame("hello", hello(overrides)));
  const decoder = new FrameDecoder();
  const buf = new Uint8Array(65536);
  const frames = async (waitMs: number) => {
    const got: { type: string }[] = [];
    let closed = false;
    while (true) {
      const n = await Promise.race([
        conn.read(buf).catch(() => null),
        new Promise<"wait">((r) => setTimeout(() => r("wait"), waitMs)),
      ]);
      if (n === "wait") break;
      if (n === null) {
        closed = true;
        break;
      }
      got.push(...decoder.push(buf.slice(0, n)));
    }
    return { types: got.map((f) => f.type), closed };
  };
  const welcome: { type: string }[] = [];
  while (welcome.length === 0) {
    const n = await conn.read(buf);
    assert.ok(n !== null, "closed during the handshake");
    welcome.push(...decoder.push(buf.slice(0, n)));
  }
  assert.equal(welcome[0].type, "welcome");
  return {
    frames,
    close: () => {
      try {
        conn.close();
      } catch { /* closed */ }
    },
  };
}

function peerEvents(t: TcpTransport): string[] {
  const events: string[] = [];
  t.onPeerUp((id) => events.push(`up ${id}`));
  t.onPeerDown((id) => events.push(`down ${id}`));
  return events;
}

Deno.test("TcpTransport pings idle links and drops a link nothing arrives on; the peer reads as down", async () => {
  const dropped: [string, number][] = [];
  const link = {
    keepaliveMs: 40,
    linkTimeoutMs: 300,
    onLinkDropped: (peer: string, silentMs: number) => dropped.push([peer, silentMs]),
  };
  const a = make("a", "c1", false, link);
  const b = make("b", "c1", false, { keepaliveMs: 40, linkTimeoutMs: 300 });
  const events = peerEvents(a.transport);
  const ghost = await silentPeer(a.transport.port, { node: "g" });
  try {
    assert.ok((await b.transport.dial(a.transport.address)).ok);
    // The silent peer gets pings, then the connection closes about linkTimeoutMs in.
    const seen = await ghost.frames(1_000);
    assert.ok(seen.types.length >= 3, JSON.stringify(seen));
    assert.ok(seen.types.every((t) => t === "link.ping"), JSON.stringify(seen));
    assert.equal(seen.closed, true);
    assert.deepEqual(events, ["up g", "up b", "down g"]);
    assert.equal(dropped.length, 1);
    assert.equal(dropped[0][0], "g");
    assert.ok(dropped[0][1] >= 300 && dropped[0][1] < 600, String(dropped[0][1]));
    assert.equal(a.transport.stats().linksDropped, 1);
    assert.ok(a.logs.some((l) => l.includes("Dropped a silent peer link") && l.includes('"g"')));
    // b's link stayed up on pings alone, in both directions.
    assert.deepEqual(a.transport.connectedPeers(), ["b"]);
    assert.deepEqual(b.transport.connectedPeers(), ["a"]);
    assert.ok(a.transport.stats().byKind.link.received > 0);
    assert.ok(b.transport.stats().byKind.link.received > 0);
    assert.equal(b.transport.stats().linksDropped, 0);
  } finally {
    ghost.close();
    a.transport.close();
    b.transport.close();
  }
});

Deno.test("TcpTransport drops no link when its own event loop was blocked past the link timeout", async () => {
  const link = { keepaliveMs: 20, linkTimeoutMs: 150 };
  const a = make("a", "c1", false, link);
  const b = make("b", "c1", false, link);
  const events = peerEvents(a.transport);
  try {
    assert.ok((await b.transport.dial(a.transport.address)).ok);
    await new Promise((r) => setTimeout(r, 100));
    // Both ends stall (one process): whatever arrived meanwhile waits unread in the socket.
    const until = performance.now() + 500;
    while (performance.now() < until) { /* blocked */ }
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(events, ["up b"]);
    assert.equal(a.transport.stats().linksDropped + b.transport.stats().linksDropped, 0);
  } finally {
    a.transport.close();
    b.transport.close();
  }
});

Deno.test("TcpTransport: a peer that redials while its old link is silent replaces that link", async () => {
  const a = make("a", "c1", false, { keepaliveMs: 40, linkTimeoutMs: 5_000 });
  const events = peerEvents(a.transport);
  const first = await silentPeer(a.transport.port, { node: "g", session: "s1" });
  let second: Awaited<ReturnType<typeof silentPeer>> | undefined;
  try {
    await new Promise((r) => setTimeout(r, 150));
    // Same session: the peer did not restart, it dropped its end of a dead link and dialed.
    second = await silentPeer(a.transport.port, { node: "g", session: "s1" });
    const old = await first.frames(200);
    assert.equal(old.closed, true);
    assert.deepEqual(events, ["up g", "down g", "up g"]);
    assert.deepEqual(a.transport.connectedPeers(), ["g"]);
    assert.equal(a.transport.stats().connections, 1);
  } finally {
    first.close();
    second?.close();
    a.transport.close();
  }
});
