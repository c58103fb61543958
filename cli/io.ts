/**
 * Output helpers: stdout for results, stderr for one-line errors. Tests replace `CliIo`.
 *
 * @module
 */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  env: Record<string, string | undefined>;
}

const encoder = new TextEncoder();

export const denoIo: CliIo = {
  out: (text) => Deno.stdout.writeSync(encoder.encode(text.endsWith("\n") ? text : text + "\n")),
  err: (text) => Deno.stderr.writeSync(encoder.encode(text.endsWith("\n") ? text : text + "\n")),
  get env() {
    return Deno.env.toObject();
  },
};

/** Thrown by subcommands for a one-line error and an exit code. */
export class CliError extends Error {
  override name = "CliError";
  constructor(message: string, readonly exitCode: number) {
    super(message);
  }
}

/** A simple left-aligned text table. */
export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  return cells.map((r) => r.map((c, i) => (c ?? "").padEnd(widths[i])).join("  ").trimEnd()).join(
    "\n",
  );
}

export function formatAgo(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "never";
  if (ms < 1000) return `${Math.round(ms)}ms ago`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s ago`;
  return `${Math.round(ms / 60_000)}m ago`;
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}
