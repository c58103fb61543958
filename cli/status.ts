/**
 * `shanghai status [--addr host:port] [--json]`: what a running node reports about itself.
 *
 * @module
 */
import { parseClientArgs, requestJson, resolveAddr } from "./client.ts";
import { EXIT_OK } from "./exit_codes.ts";
import { type CliIo, formatAgo, formatBytes } from "./io.ts";

export const STATUS_HELP = `Usage: shanghai status [--addr host:port] [--json]

Shows the cluster as the node at --addr sees it (cluster state Healthy, Degraded or Unavailable;
each member with its state, node address and when it was last heard from), then the node's own
status: node id, cluster, last LSN, segments, bytes on disk, uptime.

Options:
  --addr host:port   Node's HTTP address [default: $SHANGHAI_ADDR or 127.0.0.1:9090]
  --json             Print the raw JSON
  -h, --help         Show this help

Exit codes: 0 ok, 1 the node answered with an error, 2 bad usage, 3 node unreachable.`;

export async function status(args: string[], io: CliIo): Promise<number> {
  const values = parseClientArgs("status", args, STATUS_HELP, io);
  if (!values) return EXIT_OK;
  const addr = resolveAddr(values.addr, io);
  const { body } = await requestJson(addr, "/v1/status");
  const { body: cluster } = await requestJson(addr, "/v1/cluster/members");
  if (values.json) {
    io.out(JSON.stringify({ ...body, cluster }, null, 2));
    return EXIT_OK;
  }
  io.out(formatCluster(cluster) + "\n\n" + formatStatus(body));
  return EXIT_OK;
}

export function formatStatus(s: Record<string, unknown>): string {
  const lines = [
    "Shanghai Node Status",
    "========================================",
    `Node:          ${s.nodeId}`,
    `Cluster:       ${s.clusterId}`,
    `Origin:        ${s.origin}`,
    `Version:       ${s.version}`,
    `Ready:         ${s.ready ? "yes" : "no"}`,
    `Uptime:        ${Math.round(Number(s.uptimeMs) / 1000)}s`,
    `Last LSN:      ${s.lastLsn}`,
    `Snapshot LSN:  ${s.snapshotLsn}`,
    `Keys:          ${s.keys}${
      s.tombstones ? ` (and ${s.tombstones} deleted, kept as tombstones)` : ""
    }`,
    `Segments:      ${s.segments} (${formatBytes(Number(s.bytesOnDisk))})`,
    `Data dir:      ${s.dataDir}`,
  ];
  // Older nodes do not report it.
  if (typeof s.idlePolling === "boolean") {
    lines.push(`Idle polling:  ${s.idlePolling ? "on" : "off"}`);
  }
  return lines.join("\n");
}

const MARKS: Record<string, string> = { up: "✓", suspect: "?", down: "✗", left: "-" };

/** Seed 002's cluster view: the cluster state, then one line per member. */
export function formatCluster(c: Record<string, unknown>): string {
  const members = (c.members ?? []) as {
    id: string;
    state: string;
    address: string;
    lastSeenAgoMs: number | null;
    self: boolean;
  }[];
  const width = Math.max(0, ...members.map((m) => m.id.length));
  const lines = [
    "Shanghai Cluster Status",
    "========================================",
    "",
    `Cluster State: ${c.state}`,
    "",
    "Nodes:",
    ...members.map((m) => {
      const heard = m.self
        ? "this node"
        : m.state === "left"
        ? "left the cluster"
        : `heartbeat: ${formatAgo(m.lastSeenAgoMs)}`;
      return `  ${MARKS[m.state] ?? " "} ${m.id.padEnd(width)} - ${
        m.state.padEnd(7)
      } (${heard})  ${m.address}`;
    }),
  ];
  return lines.join("\n");
}
