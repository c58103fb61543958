/**
 * The `shanghai` command: dispatches to a subcommand and turns every outcome into an exit code.
 *
 * @module
 */
import { VERSION } from "../src/node/version.ts";
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE } from "./exit_codes.ts";
import { CliError, type CliIo, denoIo } from "./io.ts";
import { replicas } from "./replicas.ts";
import { serve } from "./serve.ts";
import { status } from "./status.ts";
import { nodeJoin, nodeLeave } from "./node_membership.ts";
import { backup, backupVerify } from "./backup.ts";
import { metrics } from "./metrics.ts";
import { restore } from "./restore.ts";

type Command = (args: string[], io: CliIo) => Promise<number>;

/** Subcommands; later layers register theirs here. */
export const COMMANDS: Record<string, { run: Command; summary: string }> = {
  serve: { run: serve, summary: "Run a node (WAL, key-value store, HTTP API)" },
  status: { run: status, summary: "Show a running node's status" },
  "node join": { run: nodeJoin, summary: "Tell a running node to join a member's cluster" },
  "node leave": {
    run: nodeLeave,
    summary: "Leave the cluster gracefully (or remove a down member)",
  },
  metrics: { run: metrics, summary: "Show a running node's metrics and alert states" },
  backup: { run: backup, summary: "Take an online backup of a running node" },
  "backup verify": {
    run: backupVerify,
    summary: "Re-check every checksum of a backup or folder of backups",
  },
  restore: {
    run: restore,
    summary: "Rebuild a data directory from a backup (optionally to an LSN or time)",
  },
  replicas: {
    run: replicas,
    summary: "Show replication to each peer: offsets, lag, credit, status",
  },
};

export function mainHelp(): string {
  const names = Object.keys(COMMANDS);
  const width = Math.max(...names.map((n) => n.length)) + 2;
  return [
    `shanghai ${VERSION}: a replicated, durable log and key-value store`,
    "",
    "Usage: shanghai <command> [options]",
    "",
    "Commands:",
    ...names.map((n) => `  ${n.padEnd(width)}${COMMANDS[n].summary}`),
    "",
    "Run 'shanghai <command> --help' for a command's options.",
    "Exit codes: 0 ok, 1 failed, 2 bad usage or config, 3 node unreachable, 4 locked.",
  ].join("\n");
}

/** Runs the CLI; returns the process exit code. */
export async function run(args: string[], io: CliIo = denoIo): Promise<number> {
  const [first, ...rest] = args;
  if (first === undefined || first === "--help" || first === "-h" || first === "help") {
    io.out(mainHelp());
    return first === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (first === "--version" || first === "version") {
    io.out(`shanghai ${VERSION}`);
    return EXIT_OK;
  }
  // Two-word commands ("node join") are registered with a space.
  const twoWord = rest.length > 0 ? `${first} ${rest[0]}` : undefined;
  const name = twoWord && COMMANDS[twoWord] ? twoWord : first;
  const command = COMMANDS[name];
  if (!command) {
    const group = Object.keys(COMMANDS).filter((n) => n.startsWith(`${first} `));
    if (group.length > 0) {
      io.err(
        `Unknown '${first}' command ${JSON.stringify(rest[0] ?? "")}: expected one of ${
          group.join(", ")
        }`,
      );
    } else {
      io.err(`Unknown command ${JSON.stringify(first)}; run 'shanghai --help'`);
    }
    return EXIT_USAGE;
  }
  try {
    return await command.run(name === twoWord ? rest.slice(1) : rest, io);
  } catch (error) {
    if (error instanceof CliError) {
      io.err(`shanghai ${name}: ${error.message}`);
      return error.exitCode;
    }
    io.err(`shanghai ${name}: unexpected error: ${(error as Error)?.stack ?? error}`);
    return EXIT_FAILED;
  }
}
