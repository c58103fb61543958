/**
 * Cluster routes: `GET /v1/cluster/members`, `POST /v1/cluster/join`, `POST /v1/cluster/leave`.
 *
 * @module
 */
import type { Hono } from "hono";
import { InputError, ShanghaiError } from "../../common/errors.ts";
import type { ClusterHealth, MemberInfo } from "../../cluster/membership_driver.ts";
import type { TransportStats } from "../../cluster/tcp_transport.ts";
import { readBody } from "./body.ts";

/** Small JSON bodies only: an address or a node id. */
const CLUSTER_BODY_BYTES_MAX = 4096;

/** What the routes need from a node's cluster layer. */
export interface ClusterControl {
  clusterId(): string;
  selfId(): string;
  members(): MemberInfo[];
  health(): ClusterHealth;
  transportStats(): TransportStats;
  /** Joins the cluster of the member at `address` (node port). */
  join(address: string): Promise<{ peerId: string; clusterId: string }>;
  /** Leaves (no id, or this node's id) or has `nodeId` leave / removed. */
  leave(nodeId: string | undefined): Promise<Record<string, unknown>>;
}

async function jsonBody(request: Request): Promise<Record<string, unknown>> {
  const bytes = await readBody(request, CLUSTER_BODY_BYTES_MAX);
  if (bytes.length === 0) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new InputError("bad_json", "Cannot parse request body: not valid JSON");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new InputError("bad_json", "Cannot parse request body: expected a JSON object");
  }
  return parsed as Record<string, unknown>;
}

/** Mounts the cluster routes; `control()` is undefined until the cluster layer has started. */
export function clusterRoutes(control: () => ClusterControl | undefined): (app: Hono) => void {
  const need = (): ClusterControl => {
    const c = control();
    if (!c) {
      throw new ShanghaiError(
        "not_ready",
        "Cannot serve cluster requests: the node is still starting",
      );
    }
    return c;
  };
  return (app) => {
    app.get("/v1/cluster/members", (c) => {
      const cluster = need();
      return c.json({
        clusterId: cluster.clusterId(),
        self: cluster.selfId(),
        state: cluster.health(),
        members: cluster.members(),
        transport: cluster.transportStats(),
      });
    });
    app.post("/v1/cluster/join", async (c) => {
      const cluster = need();
      const body = await jsonBody(c.req.raw);
      const address = body.address;
      if (typeof address !== "string" || !/^(\[[^\]]+\]|[^:/\s]+):\d{1,5}$/.test(address)) {
        throw new InputError(
          "bad_request",
          `Cannot join: "address" must be a member's node port as host:port, got ${
            JSON.stringify(address)
          }`,
        );
      }
      const joined = await cluster.join(address);
      return c.json({ joined: true, via: joined.peerId, clusterId: joined.clusterId });
    });
    app.post("/v1/cluster/leave", async (c) => {
      const cluster = need();
      const body = await jsonBody(c.req.raw);
      if (
        body.nodeId !== undefined &&
        (typeof body.nodeId !== "string" || body.nodeId.length === 0 || body.nodeId.length > 64)
      ) {
        throw new InputError(
          "bad_request",
          `Cannot leave: "nodeId" must be a node id, got ${JSON.stringify(body.nodeId)}`,
        );
      }
      return c.json(await cluster.leave(body.nodeId as string | undefined));
    });
  };
}
