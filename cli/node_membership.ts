/**
 * `shanghai node join <host:port> [--addr host:port]` and `shanghai node leave [node-id]
 * [--addr host:port]`: tell a running node to join the cluster a member belongs to, or to
 * leave (itself, or have another member leave / be removed once it is down).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { requestJson, resolveAddr } from "./client.ts";
import { EXIT_OK, EXIT_USAGE } from "./exit_codes.ts";
import { CliError, type CliIo } from "./io.ts";

export const NODE_JOIN_HELP = `Usage: shanghai node join <host:port> [--addr host:port] [--json]

Tells the running node at --addr to join the cluster that the member at <host:port> (its node
port, default 4000) belongs to. A node whose data directory holds no data yet adopts that
cluster's id; a node holding another cluster's data is refused, with the reason.

Options:
  --addr host:port   HTTP address of the node that joins [default: $SHANGHAI_ADDR or 127.0.0.1:9090]
  --json             Print the raw JSON answer
  -h, --help         Show this help

Exit codes: 0 joined, 1 refused (another cluster, a taken node id, another version) or the
member could not be reached, 2 bad usage, 3 node unreachable.`;

export const NODE_LEAVE_HELP = `Usage: shanghai node leave [node-id] [--addr host:port] [--json]

Without a node id (or with the id of the node at --addr): that node leaves the cluster
gracefully. It announces that it left, waits until the members acknowledge it (at most two
heartbeat intervals), and its process stops; other members then show it as "left" and no longer
count it. With another member's id: that member is asked to leave; if it is down, it is marked
left (removed) instead.

Options:
  --addr host:port   HTTP address of a member [default: $SHANGHAI_ADDR or 127.0.0.1:9090]
  --json             Print the raw JSON answer
  -h, --help         Show this help

Exit codes: 0 done, 1 the node answered with an error, 2 bad usage, 3 node unreachable.`;

function parse(args: string[], command: string) {
  try {
    return parseArgs({
      args,
      options: {
        addr: { type: "string" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    throw new CliError(`${(error as Error).message}; see shanghai ${command} --help`, EXIT_USAGE);
  }
}

export async function nodeJoin(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, "node join");
  if (values.help) {
    io.out(NODE_JOIN_HELP);
    return EXIT_OK;
  }
  if (positionals.length !== 1) {
    throw new CliError(
      "expected one member address, host:port; see shanghai node join --help",
      EXIT_USAGE,
    );
  }
  let member = positionals[0];
  if (/^(\[[^\]]+\]|[^:/\s@]+)$/.test(member)) member = `${member}:4000`;
  if (!/^(\[[^\]]+\]|[^:/\s@]+):\d{1,5}$/.test(member)) {
    throw new CliError(
      `Invalid member address ${JSON.stringify(positionals[0])}: expected host:port`,
      EXIT_USAGE,
    );
  }
  const addr = resolveAddr(values.addr, io);
  const { body } = await requestJson(addr, "/v1/cluster/join", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ address: member }),
  });
  if (values.json) io.out(JSON.stringify(body, null, 2));
  else io.out(`Joined cluster ${body.clusterId} through ${body.via} (${member})`);
  return EXIT_OK;
}

export async function nodeLeave(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, "node leave");
  if (values.help) {
    io.out(NODE_LEAVE_HELP);
    return EXIT_OK;
  }
  if (positionals.length > 1) {
    throw new CliError("expected at most one node id; see shanghai node leave --help", EXIT_USAGE);
  }
  const addr = resolveAddr(values.addr, io);
  const { body } = await requestJson(addr, "/v1/cluster/leave", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(positionals.length === 1 ? { nodeId: positionals[0] } : {}),
    timeoutMs: 30_000,
  });
  if (values.json) {
    io.out(JSON.stringify(body, null, 2));
  } else if (body.removed) {
    io.out(`Node ${body.left} was down and is now marked left`);
  } else if (body.already) {
    io.out(`Node ${body.left} had already left`);
  } else {
    const acked = body.acknowledged
      ? "every member acknowledged"
      : "not every member acknowledged in time";
    io.out(`Node ${body.left} left the cluster (${acked}); it is stopping`);
  }
  return EXIT_OK;
}
