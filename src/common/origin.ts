/**
 * Origins: the id every entry a node writes carries, with its sequence number. A version
 * vector counts `(origin, seq)` densely, so one origin must never issue a sequence number twice.
 *
 * A node's origin is its node id, then `~` and a tag drawn when its data directory is created
 * or restored from a backup (`n1~9f3a0c12`). A directory made fresh or rolled back holds fewer
 * of the node's own entries than its peers may, and counting on from what it holds would
 * reuse numbers the peers already have: they would drop the new entries as duplicates and
 * count them as held. A new tag starts a new origin at 1 instead. Directories created before
 * tags existed keep the bare node id as their origin.
 *
 * @module
 */
import { randomHex } from "./random.ts";

/** Node ids: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit. */
export const NODE_ID_PATTERN = "[A-Za-z0-9][A-Za-z0-9._-]{0,63}";

/** Separates a node id from its origin tag; never part of a node id. */
export const ORIGIN_TAG_SEPARATOR = "~";

/** An origin: a node id, optionally with its tag. */
export const ORIGIN_PATTERN = `${NODE_ID_PATTERN}(?:${ORIGIN_TAG_SEPARATOR}[0-9a-f]{8})?`;

const NODE_ID_RE = new RegExp(`^${NODE_ID_PATTERN}$`);
const ORIGIN_RE = new RegExp(`^${ORIGIN_PATTERN}$`);

/** Whether `value` is a node id. */
export function isNodeId(value: unknown): value is string {
  return typeof value === "string" && NODE_ID_RE.test(value);
}

/** Whether `value` is an origin (a node id, optionally with its tag). */
export function isOrigin(value: unknown): value is string {
  return typeof value === "string" && ORIGIN_RE.test(value);
}

/** A new origin for `nodeId`: its id with a fresh random tag. */
export function newOrigin(nodeId: string): string {
  return `${nodeId}${ORIGIN_TAG_SEPARATOR}${randomHex(4)}`;
}

/**
 * Origins whose node ids {@link originNode} remembers. A cluster sees few origins (one per node,
 * and one more per unclean restart), and replication asks for the node of every entry it
 * considers relaying: a slice per call was a string allocated per entry and per peer.
 */
const ORIGIN_NODES_REMEMBERED_MAX = 1024;
const originNodes = new Map<string, string>();

/** The node that wrote under `origin`. */
export function originNode(origin: string): string {
  let node = originNodes.get(origin);
  if (node === undefined) {
    const at = origin.indexOf(ORIGIN_TAG_SEPARATOR);
    node = at < 0 ? origin : origin.slice(0, at);
    if (originNodes.size >= ORIGIN_NODES_REMEMBERED_MAX) originNodes.clear();
    originNodes.set(origin, node);
  }
  return node;
}
