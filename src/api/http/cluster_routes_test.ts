import assert from "node:assert/strict";
import { EventBus } from "../../telemetry/events.ts";
import { silentLogger } from "../../telemetry/log.ts";
import { ShanghaiError } from "../../common/errors.ts";
import { createApp } from "./app.ts";
import { type ClusterControl, clusterRoutes } from "./cluster_routes.ts";

function control(overrides: Partial<ClusterControl> = {}): ClusterControl {
  return {
    clusterId: () => "c1",
    selfId: () => "n1",
    members: () => [
      {
        id: "n1",
        address: "h:1",
        httpAddress: "h:2",
        state: "up",
        incarnation: 1,
        lastSeenMs: 5,
        lastSeenAgoMs: 0,
        self: true,
      },
      {
        id: "n2",
        address: "h:3",
        httpAddress: "h:4",
        state: "down",
        incarnation: 2,
        lastSeenMs: 1,
        lastSeenAgoMs: 4,
        self: false,
      },
    ],
    health: () => "Degraded",
    transportStats: () => ({
      connections: 1,
      bytesSent: 0,
      bytesReceived: 0,
      byKind: {},
      refused: 0,
      protocolErrors: 0,
      linksDropped: 0,
    }),
    join: () => Promise.resolve({ peerId: "n9", clusterId: "c1" }),
    leave: (nodeId) => Promise.resolve({ left: nodeId ?? "n1" }),
    ...overrides,
  };
}

function app(c: ClusterControl | undefined) {
  return createApp({
    store: () => undefined,
    readiness: () => ({ ready: true, reasons: [] }),
    status: () => ({}),
    events: new EventBus(),
    logger: silentLogger,
  }, [clusterRoutes(() => c)]);
}

const post = (_path: string, body: string) => ({
  method: "POST",
  headers: { "content-type": "application/json" },
  body,
});

Deno.test("GET /v1/cluster/members lists members with state, incarnation and lastSeenMs", async () => {
  const res = await app(control()).request("/v1/cluster/members");
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.state, "Degraded");
  assert.deepEqual(body.members.map((m: { id: string; state: string }) => [m.id, m.state]), [[
    "n1",
    "up",
  ], ["n2", "down"]]);
  assert.equal(body.members[1].lastSeenMs, 1);
  assert.equal((await app(undefined).request("/v1/cluster/members")).status, 503);
});

Deno.test("POST /v1/cluster/join validates the address and maps refusals to 409", async () => {
  assert.equal(
    (await app(control()).request("/v1/cluster/join", post("", '{"address":"h:4000"}'))).status,
    200,
  );
  for (const bad of ['{"address":"nope"}', "{}", "[1]", "not json", '{"address":5}']) {
    const res = await app(control()).request("/v1/cluster/join", post("", bad));
    assert.equal(res.status, 400, bad);
  }
  const refusing = control({
    join: () =>
      Promise.reject(new ShanghaiError("conflict", "Cannot join through h:1: other cluster")),
  });
  const res = await app(refusing).request("/v1/cluster/join", post("", '{"address":"h:1"}'));
  assert.equal(res.status, 409);
  assert.match((await res.json()).error.message, /other cluster/);
});

Deno.test("POST /v1/cluster/leave takes an optional node id", async () => {
  assert.deepEqual(
    await (await app(control()).request("/v1/cluster/leave", post("", "{}"))).json(),
    { left: "n1" },
  );
  assert.deepEqual(
    await (await app(control()).request("/v1/cluster/leave", post("", '{"nodeId":"n2"}'))).json(),
    { left: "n2" },
  );
  assert.equal(
    (await app(control()).request("/v1/cluster/leave", post("", '{"nodeId":7}'))).status,
    400,
  );
});
