/**
 * The HTTP client every client subcommand uses: `--addr host:port`, else SHANGHAI_ADDR, else
 * 127.0.0.1:9090. Errors become CliErrors with the right exit code.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE } from "./exit_codes.ts";
import { CliError, type CliIo } from "./io.ts";

export const DEFAULT_ADDR = "127.0.0.1:9090";
const REQUEST_TIMEOUT_MS = 10_000;

export function resolveAddr(flag: string | undefined, io: CliIo): string {
  const addr = flag ?? io.env.SHANGHAI_ADDR ??
    (io.env.SHANGHAI_ADMIN_PORT ? `127.0.0.1:${io.env.SHANGHAI_ADMIN_PORT}` : DEFAULT_ADDR);
  if (!/^(\[[^\]]+\]|[^:/\s]+):\d{1,5}$/.test(addr)) {
    throw new CliError(`Invalid --addr ${JSON.stringify(addr)}: expected host:port`, EXIT_USAGE);
  }
  return addr;
}

export async function requestJson<T = Record<string, unknown>>(
  addr: string,
  path: string,
  init: RequestInit & { timeoutMs?: number; okStatuses?: number[] } = {},
): Promise<{ status: number; body: T }> {
  let response: Response;
  try {
    response = await fetch(`http://${addr}${path}`, {
      ...init,
      signal: AbortSignal.timeout(init.timeoutMs ?? REQUEST_TIMEOUT_MS),
    });
  } catch (error) {
    throw new CliError(
      `Cannot reach node at ${addr}: ${(error as Error).message}`,
      EXIT_UNREACHABLE,
    );
  }
  const text = await response.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = { raw: text };
  }
  if (!response.ok && !(init.okStatuses ?? []).includes(response.status)) {
    const err = (body as { error?: { message?: string } }).error;
    throw new CliError(
      `Node at ${addr} answered ${response.status}: ${err?.message ?? text.slice(0, 200)}`,
      EXIT_FAILED,
    );
  }
  return { status: response.status, body: body as T };
}

/** Flags every client subcommand shares, plus any extra boolean flags it names. */
export interface ClientFlags {
  addr?: string;
  json?: boolean;
  [flag: string]: string | boolean | undefined;
}

/**
 * Parses `--addr host:port`, `--json`, `-h/--help` and `extraBooleans`. Prints `help` and
 * returns undefined for --help; a bad flag is a one-line usage error (exit 2).
 */
export function parseClientArgs(
  command: string,
  args: string[],
  help: string,
  io: CliIo,
  extraBooleans: readonly string[] = [],
): ClientFlags | undefined {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    addr: { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  };
  for (const flag of extraBooleans) options[flag] = { type: "boolean" };
  let values: ClientFlags & { help?: boolean };
  try {
    ({ values } = parseArgs({ args, options, strict: true }));
  } catch (error) {
    throw new CliError(`${(error as Error).message}; see shanghai ${command} --help`, EXIT_USAGE);
  }
  if (values.help) {
    io.out(help);
    return undefined;
  }
  return values;
}
