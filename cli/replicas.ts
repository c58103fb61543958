/**
 * `shanghai replicas [--addr host:port] [--json]`: the node's replication stream to each peer.
 *
 * @module
 */
import { parseClientArgs, requestJson, resolveAddr } from "./client.ts";
import { EXIT_OK } from "./exit_codes.ts";
import { type CliIo, formatBytes, table } from "./io.ts";

export const REPLICAS_HELP = `Usage: shanghai replicas [--addr host:port] [--json]

Shows, for every peer of the node, the replication stream from this node to it: this node's
last LSN (leader offset), the LSN the peer acknowledged (follower offset), the lag between
them, the credit left, status (replicating, paused, catching_up, snapshot, opening, down),
throughput, and how long the peer took on average to acknowledge a batch over the last second
(ACK: its receive, append, fdatasync and answer; what ack=quorum and ack=all writes wait for).

Options:
  --addr host:port   Node's HTTP address [default: $SHANGHAI_ADDR or 127.0.0.1:9090]
  --json             Print the raw JSON
  -h, --help         Show this help

Exit codes: 0 ok, 1 the node answered with an error, 2 bad usage, 3 node unreachable.`;

interface ReplicaRow {
  peer: string;
  status: string;
  leaderOffset: number;
  followerOffset: number;
  lag: number;
  credit: number;
  entriesPerSec: number;
  bytesPerSec: number;
  /** Absent from nodes older than this field. */
  ackLatencyMs?: number | null;
}

export async function replicas(args: string[], io: CliIo): Promise<number> {
  const values = parseClientArgs("replicas", args, REPLICAS_HELP, io);
  if (!values) return EXIT_OK;
  const addr = resolveAddr(values.addr, io);
  const { body } = await requestJson(addr, "/v1/replicas");
  if (values.json) {
    io.out(JSON.stringify(body, null, 2));
    return EXIT_OK;
  }
  io.out(formatReplicas(body));
  return EXIT_OK;
}

export function formatReplicas(body: Record<string, unknown>): string {
  const rows = (body.replicas as ReplicaRow[] | undefined) ?? [];
  const head = `Node ${body.nodeId}: last LSN ${body.lastLsn}, ${
    (body.members as string[] | undefined)?.length ?? 1
  } members`;
  if (rows.length === 0) return `${head}\nNo peers: this node replicates to no one.`;
  return [
    head,
    table(
      ["PEER", "STATUS", "LEADER OFFSET", "FOLLOWER OFFSET", "LAG", "CREDIT", "THROUGHPUT", "ACK"],
      rows.map((r) => [
        r.peer,
        r.status,
        r.leaderOffset,
        r.followerOffset,
        r.lag,
        r.credit,
        `${r.entriesPerSec}/s ${formatBytes(r.bytesPerSec)}/s`,
        typeof r.ackLatencyMs === "number" ? `${r.ackLatencyMs.toFixed(2)} ms` : "-",
      ]),
    ),
  ].join("\n");
}
