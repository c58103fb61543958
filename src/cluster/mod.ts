/**
 * Cluster membership: who is in the cluster and whether each member is up, suspect, down or
 * left, plus the node-to-node transport other layers (replication) send through.
 *
 * Intuition: every node probes every member each heartbeat interval over its node port; a
 * member silent past `--suspect-after-ms` is suspect, past `--down-after-ms` down, and a live
 * member that hears it is suspected refutes with a higher incarnation. Changes travel
 * piggybacked on the probes (SWIM), and the full member list is exchanged on every new
 * connection, so a join reaches everyone within a few heartbeats.
 *
 * ```ts ignore
 * import { onMembershipChanged, ShanghaiNode, resolveConfig } from "./mod.ts";
 * const node = await ShanghaiNode.start(resolveConfig({ "join": "10.0.1.10:4000" }, {}));
 * const off = onMembershipChanged(node, (e) => console.log(e.nodeId, e.kind, e.state));
 * console.log(node.membership.members().map((m) => `${m.id}: ${m.state}`));
 * off();
 * ```
 *
 * @module
 */
import type { EventBus, EventMap } from "../telemetry/events.ts";

export type { PeerTransport } from "./transport.ts";
export type { MemberEvent, MemberEventKind, MemberState } from "./membership.ts";
export {
  type ClusterHealth,
  clusterHealth,
  type MemberInfo,
  MembershipDriver,
} from "./membership_driver.ts";
export type { DetectorKind } from "./failure_detector.ts";

/** A membership change as published on the event bus (`cluster.member.changed`). */
export type MembershipChange = EventMap["cluster.member.changed"];

/**
 * Subscribes to membership changes (joined, up, suspect, down, left) of a node or an event
 * bus; returns the function that unsubscribes.
 */
export function onMembershipChanged(
  source: EventBus | { events: EventBus },
  listener: (change: MembershipChange) => void,
): () => void {
  const bus = "events" in source ? source.events : source;
  return bus.on("cluster.member.changed", (event) => listener(event));
}
