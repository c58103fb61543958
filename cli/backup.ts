/**
 * `shanghai backup --to DIR [--addr host:port] [--incremental] [--keep N] [--json]` and
 * `shanghai backup verify DIR [--json]`.
 *
 * One summary line on stdout for logs and cron mail; errors are one line on stderr; the exit
 * code says what happened (see BACKUP_HELP).
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  BackupIntegrityError,
  BackupLockedError,
  BackupTransferError,
  runBackup,
  verifyBackups,
} from "../src/backup/mod.ts";
import { resolveAddr } from "./client.ts";
import { EXIT_FAILED, EXIT_LOCKED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE } from "./exit_codes.ts";
import { CliError, type CliIo, formatBytes } from "./io.ts";

export const BACKUP_HELP =
  `Usage: shanghai backup --to DIR [--addr host:port] [--incremental] [--keep N] [--json]
       shanghai backup verify DIR [--json]

Takes an online, consistent backup of a running node (a snapshot plus the WAL up to one LSN,
and a manifest with node id, cluster id, LSN range, files, sizes and SHA-256) into a new
timestamped folder inside DIR. The folder appears only once it is complete.

Options:
  --to DIR           Folder of backups (created if missing; locked while a backup runs)
  --addr host:port   Node's HTTP address [default: $SHANGHAI_ADDR or 127.0.0.1:9090]
  --incremental      Only what changed since the newest backup in DIR (falls back to a full
                     backup, and says why, when that is impossible)
  --keep N           Afterwards keep the newest N backups (and the bases they need)
  --json             Print the summary as JSON
  -h, --help         Show this help

'backup verify DIR' re-checks every checksum of one backup, or of every backup in DIR.

Exit codes: 0 ok, 1 failed (node error, transfer broke off, a verify check failed),
2 bad usage, 3 node unreachable, 4 another backup holds the lock on DIR.`;

type ParseOptions = Record<string, { type: "string" | "boolean"; short?: string }>;

function parse(args: string[], options: ParseOptions, positionals = false) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: positionals });
  } catch (error) {
    throw new CliError(`${(error as Error).message}; see shanghai backup --help`, EXIT_USAGE);
  }
}

export async function backup(args: string[], io: CliIo): Promise<number> {
  const { values } = parse(args, {
    to: { type: "string" },
    addr: { type: "string" },
    incremental: { type: "boolean" },
    keep: { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  }) as {
    values: {
      to?: string;
      addr?: string;
      incremental?: boolean;
      keep?: string;
      json?: boolean;
      help?: boolean;
    };
  };
  if (values.help) {
    io.out(BACKUP_HELP);
    return EXIT_OK;
  }
  if (!values.to) throw new CliError("Missing --to DIR; see shanghai backup --help", EXIT_USAGE);
  let keep: number | undefined;
  if (values.keep !== undefined) {
    if (!/^\d{1,6}$/.test(values.keep) || Number(values.keep) < 1) {
      throw new CliError(
        `Invalid --keep ${JSON.stringify(values.keep)}: expected a whole number >= 1`,
        EXIT_USAGE,
      );
    }
    keep = Number(values.keep);
  }
  const addr = resolveAddr(values.addr, io);
  try {
    const s = await runBackup({ addr, toDir: values.to, incremental: values.incremental, keep });
    if (values.json) {
      io.out(JSON.stringify(s));
    } else {
      const mbps = s.durationMs > 0 ? (s.bytes / 1048576 / (s.durationMs / 1000)).toFixed(1) : "-";
      io.out(
        `backup ok name=${s.name} kind=${s.kind}${
          s.base ? ` base=${s.base}` : ""
        } lsn=${s.firstLsn}-${s.lastLsn} files=${s.files} ` +
          `bytes=${s.bytes} (${
            formatBytes(s.bytes)
          }) duration_ms=${s.durationMs} mb_per_s=${mbps} pruned=${s.pruned.length} ` +
          `path=${s.path}${s.fullReason ? ` full_reason=${JSON.stringify(s.fullReason)}` : ""}`,
      );
    }
    return EXIT_OK;
  } catch (error) {
    if (error instanceof BackupLockedError) throw new CliError(error.message, EXIT_LOCKED);
    if (error instanceof BackupTransferError) {
      throw new CliError(error.message, error.unreachable ? EXIT_UNREACHABLE : EXIT_FAILED);
    }
    if (error instanceof BackupIntegrityError) throw new CliError(error.message, EXIT_FAILED);
    if (error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotFound) {
      throw new CliError(`Cannot write the backup: ${(error as Error).message}`, EXIT_FAILED);
    }
    throw error;
  }
}

export async function backupVerify(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, {
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  }, true) as {
    values: { json?: boolean; help?: boolean };
    positionals: string[];
  };
  if (values.help) {
    io.out(BACKUP_HELP);
    return EXIT_OK;
  }
  if (positionals.length !== 1) {
    throw new CliError("Expected one DIR; see shanghai backup --help", EXIT_USAGE);
  }
  const results = await verifyBackups(positionals[0]);
  if (results.length === 0) {
    throw new CliError(`Cannot verify ${positionals[0]}: no backup found there`, EXIT_FAILED);
  }
  if (values.json) {
    io.out(JSON.stringify(results, null, 2));
  } else {
    for (const r of results) {
      io.out(
        r.ok
          ? `verify ok path=${r.path} kind=${r.kind} lsn=${r.firstLsn}-${r.lastLsn} files=${r.files} bytes=${r.bytes}`
          : `verify FAILED path=${r.path} problems=${JSON.stringify(r.problems)}`,
      );
    }
  }
  return results.every((r) => r.ok) ? EXIT_OK : EXIT_FAILED;
}
