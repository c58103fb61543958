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
      !second.ok && second.refused && second.code === "duplicate_id",
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
