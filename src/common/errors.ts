/**
 * Operating errors: conditions a caller acts on. Each carries a stable `code` that the HTTP
 * layer maps to a status and the CLI to an exit code, in one place each.
 *
 * @module
 */

/** Stable machine-readable error codes, shared by HTTP JSON bodies and CLI output. */
export type ErrorCode =
  | "bad_request"
  | "bad_key"
  | "bad_json"
  | "bad_query"
  | "not_found"
  | "too_large"
  | "unsupported_media_type"
  | "not_ready"
  | "overloaded"
  | "closed"
  | "corrupt"
  | "config"
  | "io"
  | "conflict"
  | "unreachable"
  | "timeout"
  | "refused";

/** Base of every operating error Shanghai raises on purpose. */
export class ShanghaiError extends Error {
  override name = "ShanghaiError";
  constructor(readonly code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** Bad input from a client or peer: nothing was changed. */
export class InputError extends ShanghaiError {
  override name = "InputError";
}

/** A value, key, frame or batch over its limit. */
export class TooLargeError extends ShanghaiError {
  override name = "TooLargeError";
  constructor(what: string, bytes: number, bytesMax: number) {
    super("too_large", `Cannot accept ${what}: ${bytes} bytes is over the limit of ${bytesMax}`);
  }
}

/** The node cannot take more work now; the caller should retry later. */
export class OverloadedError extends ShanghaiError {
  override name = "OverloadedError";
}

/** The WAL or store has been closed. */
export class ClosedError extends ShanghaiError {
  override name = "ClosedError";
  constructor(what: string) {
    super("closed", `Cannot use ${what}: it is closed`);
  }
}

/** Damage on disk that recovery will not repair by itself. */
export class CorruptionError extends ShanghaiError {
  override name = "CorruptionError";
  constructor(
    readonly file: string,
    readonly offset: number,
    reason: string,
    advice: string,
  ) {
    super("corrupt", `Cannot open "${file}": ${reason} at byte ${offset}. ${advice}`);
  }
}

/** A setting that does not validate; the message names the setting. */
export class ConfigError extends ShanghaiError {
  override name = "ConfigError";
  constructor(readonly setting: string, message: string) {
    super("config", `Invalid setting ${setting}: ${message}`);
  }
}

/** A write was stored but not confirmed by enough replicas in time; it is not rolled back. */
export class AckTimeoutError extends ShanghaiError {
  override name = "AckTimeoutError";
  constructor(
    readonly level: string,
    readonly copies: number,
    readonly copiesNeeded: number,
    readonly members: number,
    readonly token: string,
  ) {
    super(
      "timeout",
      `Cannot confirm ack=${level}: ${copies} of ${members} members hold the write durably, ${copiesNeeded} needed; the write is kept and will still replicate`,
    );
  }
}

/** A replication frame that is malformed or out of order; it was refused without effect. */
export class ProtocolError extends ShanghaiError {
  override name = "ProtocolError";
  constructor(message: string, options?: ErrorOptions) {
    super("refused", message, options);
  }
}
