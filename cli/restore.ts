/**
 * `shanghai restore --from BACKUP --data-dir EMPTY_DIR [--to-lsn N | --to-time T] [--json]`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  BackupIntegrityError,
  RestoreCutUnavailableError,
  RestoreRefusedError,
  runRestore,
} from "../src/backup/mod.ts";
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE } from "./exit_codes.ts";
import { CliError, type CliIo } from "./io.ts";

export const RESTORE_HELP =
  `Usage: shanghai restore --from BACKUP --data-dir EMPTY_DIR [--to-lsn N | --to-time T] [--json]

Rebuilds a data directory from a backup folder (with the backups an incremental one builds on,
found beside it). Every file is checked against the manifest's SHA-256 while it is copied; the
target appears only once the restore is complete. Start the node on it afterwards.

Options:
  --from BACKUP      A backup folder (one with manifest.json)
  --data-dir DIR     Target data directory: must not exist or be empty
  --to-lsn N         Point in time: keep entries up to LSN N
  --to-time T        Point in time: keep entries written at or before T (ISO 8601, or Unix ms),
                     judged by each entry's hybrid logical clock
  --json             Print the summary as JSON
  -h, --help         Show this help

Exit codes: 0 ok, 1 a tampered, missing or damaged backup file or manifest (nothing written),
2 bad usage, a non-empty target, or a point in time the backup does not hold.`;

export function parseTime(text: string): number {
  if (/^\d{1,16}$/.test(text)) return Number(text);
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) {
    throw new CliError(
      `Invalid --to-time ${JSON.stringify(text)}: expected ISO 8601 or Unix ms`,
      EXIT_USAGE,
    );
  }
  return ms;
}

export async function restore(args: string[], io: CliIo): Promise<number> {
  let values: {
    from?: string;
    "data-dir"?: string;
    "to-lsn"?: string;
    "to-time"?: string;
    json?: boolean;
    help?: boolean;
  };
  try {
    ({ values } = parseArgs({
      args,
      options: {
        from: { type: "string" },
        "data-dir": { type: "string" },
        "to-lsn": { type: "string" },
        "to-time": { type: "string" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
    }));
  } catch (error) {
    throw new CliError(`${(error as Error).message}; see shanghai restore --help`, EXIT_USAGE);
  }
  if (values.help) {
    io.out(RESTORE_HELP);
    return EXIT_OK;
  }
  if (!values.from || !values["data-dir"]) {
    throw new CliError("Missing --from or --data-dir; see shanghai restore --help", EXIT_USAGE);
  }
  if (values["to-lsn"] !== undefined && values["to-time"] !== undefined) {
    throw new CliError("Give --to-lsn or --to-time, not both", EXIT_USAGE);
  }
  let toLsn: number | undefined;
  if (values["to-lsn"] !== undefined) {
    if (!/^\d{1,16}$/.test(values["to-lsn"])) {
      throw new CliError(`Invalid --to-lsn ${JSON.stringify(values["to-lsn"])}`, EXIT_USAGE);
    }
    toLsn = Number(values["to-lsn"]);
  }
  const toTimeMs = values["to-time"] !== undefined ? parseTime(values["to-time"]) : undefined;
  try {
    const s = await runRestore({ from: values.from, dataDir: values["data-dir"], toLsn, toTimeMs });
    if (values.json) io.out(JSON.stringify(s));
    else {
      for (const note of s.notes) io.err(`shanghai restore: note: ${note}`);
      io.out(
        `restore ok data_dir=${s.dataDir} node=${s.nodeId} cluster=${s.clusterId} backups=${s.chain.length} ` +
          `snapshot_lsn=${
            s.snapshotLsn ?? "none"
          } last_lsn=${s.lastLsn} files=${s.files} bytes=${s.bytes} duration_ms=${s.durationMs}`,
      );
    }
    return EXIT_OK;
  } catch (error) {
    // The command line is fine, this backup cannot produce that state: the message says which.
    if (error instanceof RestoreCutUnavailableError) throw new CliError(error.message, EXIT_FAILED);
    if (error instanceof RestoreRefusedError || error instanceof RangeError) {
      throw new CliError(error.message, EXIT_USAGE);
    }
    if (error instanceof BackupIntegrityError) throw new CliError(error.message, EXIT_FAILED);
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.PermissionDenied) {
      throw new CliError(`Cannot restore: ${(error as Error).message}`, EXIT_FAILED);
    }
    throw error;
  }
}
