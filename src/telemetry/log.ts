/**
 * Structured logs: one line per event on stderr, `json` or `text`, filtered by level.
 * Callers pass fields, never secrets; values are printed as given.
 *
 * @module
 */

export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFormat = "json" | "text";
export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

const encoder = new TextEncoder();

/** Field names whose values never reach a log line (credentials in config, headers, URLs). */
const SECRET_FIELD = /password|passwd|secret|token|authorization|api[_-]?key|credential|cookie/i;

/** Replaces secret-looking fields and strips user:password@ from URL-looking strings. */
export function redactFields(fields: LogFields): LogFields {
  const out: LogFields = {};
  for (const [key, value] of Object.entries(fields)) {
    if (SECRET_FIELD.test(key)) out[key] = "[redacted]";
    else if (typeof value === "string" && /^[a-z][a-z0-9+.-]*:\/\/[^/\s]*@/i.test(value)) {
      out[key] = value.replace(/\/\/[^/\s]*@/, "//[redacted]@");
    } else out[key] = value;
  }
  return out;
}

export function createLogger(
  options: { level?: LogLevel; format?: LogFormat; write?: (line: string) => void } = {},
): Logger {
  const min = LOG_LEVELS.indexOf(options.level ?? "info");
  const format = options.format ?? "text";
  const write = options.write ??
    ((line: string) => Deno.stderr.writeSync(encoder.encode(line + "\n")));
  const log = (level: LogLevel, msg: string, fields: LogFields = {}) => {
    if (LOG_LEVELS.indexOf(level) < min) return;
    const time = new Date().toISOString();
    fields = redactFields(fields);
    // One event, one line: a newline in a message would split it for every log shipper.
    msg = msg.replaceAll("\n", "\\n");
    if (format === "json") {
      write(JSON.stringify({ time, level, msg, ...fields }));
    } else {
      const rest = Object.entries(fields).map(([k, v]) =>
        `${k}=${typeof v === "string" ? JSON.stringify(v) : JSON.stringify(v)}`
      );
      write([time, level.toUpperCase().padEnd(5), msg, ...rest].join(" "));
    }
  };
  return {
    debug: (msg, fields) => log("debug", msg, fields),
    info: (msg, fields) => log("info", msg, fields),
    warn: (msg, fields) => log("warn", msg, fields),
    error: (msg, fields) => log("error", msg, fields),
  };
}

/** A logger that drops everything (library default). */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
