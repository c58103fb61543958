/**
 * One contract suite for every {@link PeerTransport}: the simulated one and TCP must behave
 * the same where membership and replication rely on them.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { PeerTransport } from "../../src/cluster/transport.ts";

export interface TransportPair {
  a: PeerTransport;
  b: PeerTransport;
  /** a dials b (and the handshake completes). */
  connect(): Promise<void>;
  /** b goes away (crash or close). */
  dropB(): Promise<void>;
  /** Lets queued deliveries happen. */
  settle(): Promise<void>;
  cleanup(): Promise<void>;
}

async function until(
  settle: () => Promise<void>,
  done: () => boolean,
  what: string,
): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (done()) return;
    await settle();
  }
  assert.fail(`timed out waiting for ${what}`);
}

export function transportContract(name: string, make: () => Promise<TransportPair>): void {
  Deno.test(`${name}: send() before a connection returns false`, async () => {
    const p = await make();
    try {
      assert.equal(p.a.send(p.b.nodeId, "test.x", { n: 1 }), false);
      assert.deepEqual(p.a.connectedPeers(), []);
    } finally {
      await p.cleanup();
    }
  });

  Deno.test(`${name}: connecting fires peerUp on both sides and messages arrive in order with their sender`, async () => {
    const p = await make();
    try {
      const ups: string[] = [];
      p.a.onPeerUp((id) => ups.push(`a:${id}`));
      p.b.onPeerUp((id) => ups.push(`b:${id}`));
      const got: [string, unknown][] = [];
      p.b.handle("test.x", (from, body) => got.push([from, body]));
      await p.connect();
      await until(p.settle, () => ups.length === 2, "peerUp");
      assert.deepEqual(ups.sort(), [`a:${p.b.nodeId}`, `b:${p.a.nodeId}`].sort());
      assert.deepEqual(p.a.connectedPeers(), [p.b.nodeId]);
      for (let i = 0; i < 20; i++) {
        assert.equal(p.a.send(p.b.nodeId, "test.x", { n: i, bytes: new Uint8Array([i]) }), true);
      }
      await until(p.settle, () => got.length === 20, "20 messages");
      assert.deepEqual(got.map(([from]) => from), Array(20).fill(p.a.nodeId));
      assert.deepEqual(got.map(([, body]) => (body as { n: number }).n), [...Array(20).keys()]);
      assert.deepEqual((got[3][1] as { bytes: Uint8Array }).bytes, new Uint8Array([3]));
    } finally {
      await p.cleanup();
    }
  });

  Deno.test(`${name}: a burst of frames of mixed sizes arrives whole and in order`, async () => {
    const p = await make();
    try {
      const got: { n: number; bytes: Uint8Array }[] = [];
      p.b.handle("test.burst", (_from, body) => got.push(body as { n: number; bytes: Uint8Array }));
      await p.connect();
      await until(p.settle, () => p.a.connectedPeers().length === 1, "peerUp");
      // About 1 MiB queued in one go: TCP writes coalesce queued frames up to 256 KiB.
      const sizes = Array.from({ length: 200 }, (_, i) => 1 + ((i * 7919) % 10_000));
      sizes.forEach((size, n) => {
        assert.equal(
          p.a.send(p.b.nodeId, "test.burst", { n, bytes: new Uint8Array(size).fill(n) }),
          true,
        );
      });
      await until(p.settle, () => got.length === sizes.length, "every frame");
      assert.deepEqual(got.map((g) => g.n), [...sizes.keys()]);
      for (const { n, bytes } of got) {
        assert.equal(bytes.length, sizes[n]);
        assert.ok(bytes.every((b) => b === (n & 0xff)), `frame ${n} arrived intact`);
      }
    } finally {
      await p.cleanup();
    }
  });

  Deno.test(`${name}: losing the peer fires peerDown and send() returns false`, async () => {
    const p = await make();
    try {
      const downs: string[] = [];
      p.a.onPeerDown((id) => downs.push(id));
      await p.connect();
      await until(p.settle, () => p.a.connectedPeers().length === 1, "connection");
      await p.dropB();
      await until(p.settle, () => downs.length === 1, "peerDown");
      assert.deepEqual(downs, [p.b.nodeId]);
      assert.equal(p.a.send(p.b.nodeId, "test.x", {}), false);
    } finally {
      await p.cleanup();
    }
  });
}
