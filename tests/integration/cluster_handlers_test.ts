/**
 * The cluster layer hands the transport to the layers above before any peer can be heard, so
 * their handlers take the first frames a peer sends. A leader opens its replication stream as
 * soon as it sees a restarted node, while that node may still be joining its seeds; the open
 * used to be dropped for want of a handler, and the catch-up waited for the leader's resend
 * timeout (1 s).
 */
import assert from "node:assert/strict";
import { systemClock } from "../../src/common/clock.ts";
import { NodeCluster } from "../../src/cluster/node_cluster.ts";
import type { TcpTransport } from "../../src/cluster/tcp_transport.ts";
import { resolveConfig } from "../../src/node/config.ts";
import { loadOrCreateIdentity } from "../../src/node/identity.ts";
import { Store } from "../../src/storage/kv/store.ts";
import { EventBus } from "../../src/telemetry/events.ts";
import { silentLogger } from "../../src/telemetry/log.ts";
import { waitFor } from "../support/wait.ts";

async function startMember(
  id: string,
  dataDir: string,
  join: string[],
  onTransport: (transport: TcpTransport) => void,
): Promise<{ cluster: NodeCluster; store: Store }> {
  const config = resolveConfig({
    "node-id": id,
    "data-dir": dataDir,
    "port": "0",
    "admin-port": "0",
    ...(join.length > 0 ? { "join": join.join(",") } : {}),
  }, {});
  const identity = await loadOrCreateIdentity(dataDir, id, Date.now());
  const store = await Store.open({ dataDir, nodeId: id });
  const cluster = await NodeCluster.start({
    config,
    identity,
    store,
    httpAddress: () => "127.0.0.1:1",
    onIdentityChanged: () => {},
    onLeft: () => {},
    onTransport,
    clock: systemClock,
    events: new EventBus(),
    logger: silentLogger,
  });
  return { cluster, store };
}

Deno.test("The cluster layer hands over its transport before any peer is connected, and the handler set there takes a peer's first frame", async () => {
  const dirs = [
    await Deno.makeTempDir({ prefix: "shanghai-handlers-n1-" }),
    await Deno.makeTempDir({ prefix: "shanghai-handlers-n2-" }),
  ];
  const members: { cluster: NodeCluster; store: Store }[] = [];
  try {
    // The seed greets every peer the moment it is connected.
    members.push(
      await startMember("n1", dirs[0], [], (t) => {
        t.onPeerUp((peer) => t.send(peer, "test.hello", { from: "n1" }));
      }),
    );
    const seeds = [members[0].cluster.transport.address];
    // n2 joined once before: it restarts as a member that holds the cluster's id.
    const first = await startMember("n2", dirs[1], seeds, () => {});
    await first.cluster.stop();
    await first.store.close({ snapshot: false });
    const heard: unknown[] = [];
    let started = false;
    let peersAtHandover: string[] | undefined;
    members.push(
      await startMember("n2", dirs[1], seeds, (t) => {
        assert.equal(started, false);
        peersAtHandover = t.connectedPeers();
        t.handle("test.hello", (from, body) => heard.push({ from, body }));
      }),
    );
    started = true;
    assert.deepEqual(peersAtHandover, [], "handed over before the join connected anyone");
    await waitFor("n1's greeting", () => heard.length > 0, 5_000);
    assert.deepEqual(heard, [{ from: "n1", body: { from: "n1" } }]);
  } finally {
    for (const m of members.reverse()) {
      await m.cluster.stop();
      await m.store.close({ snapshot: false });
    }
    for (const dir of dirs) await Deno.remove(dir, { recursive: true });
  }
});
