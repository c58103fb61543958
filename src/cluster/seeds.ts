/**
 * Seed members from --join / SHANGHAI_CLUSTER_NODES: `host:port`, `id@host:port`, or seed 002's
 * `id@host` (the node port defaults to 4000).
 *
 * @module
 */
import { ConfigError } from "../common/errors.ts";
import { isNodeId } from "../common/origin.ts";

export const NODE_PORT_DEFAULT = 4000;

export interface Seed {
  id?: string;
  address: string;
}

/** Parses one seed; a bad one is a ConfigError naming `setting`. */
export function parseSeed(text: string, setting = "join"): Seed {
  const trimmed = text.trim();
  const at = trimmed.indexOf("@");
  const id = at >= 0 ? trimmed.slice(0, at) : undefined;
  const rest = at >= 0 ? trimmed.slice(at + 1) : trimmed;
  if (id !== undefined && !isNodeId(id)) {
    throw new ConfigError(setting, `${JSON.stringify(text)} has a bad node id before '@'`);
  }
  const withPort = /^(\[[^\]]+\]|[^:@\s/]+):(\d{1,5})$/.exec(rest);
  const bare = /^(\[[^\]]+\]|[^:@\s/]+)$/.exec(rest);
  let host: string;
  let port: number;
  if (withPort) {
    host = withPort[1];
    port = Number(withPort[2]);
  } else if (bare && id !== undefined) {
    host = bare[1];
    port = NODE_PORT_DEFAULT;
  } else {
    throw new ConfigError(
      setting,
      `${JSON.stringify(text)} is not host:port, id@host:port or id@host`,
    );
  }
  if (port < 1 || port > 65535) {
    throw new ConfigError(setting, `${JSON.stringify(text)} has a bad port`);
  }
  return { ...(id === undefined ? {} : { id }), address: `${host}:${port}` };
}
