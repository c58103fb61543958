/**
 * Reads of a node's state through its HTTP API, for tests that wait for replicas to stream
 * and converge. They work on real processes (spawnNode) and in-process nodes alike: anything
 * with the `url` it serves at.
 *
 * @module
 */
import { sameVersionVector } from "./wait.ts";

/** A node serving the HTTP API at `url` (`http://host:port`, no trailing slash). */
export interface HttpNode {
  url: string;
}

/** GETs `path` from `node` and parses the JSON answer. */
export async function getJson(node: HttpNode, path: string): Promise<Record<string, unknown>> {
  const response = await fetch(`${node.url}${path}`);
  return await response.json();
}

/** Whether every node reports the same digest and version vector (in any key order). */
export async function digestsEqual(nodes: HttpNode[]): Promise<boolean> {
  const digests = await Promise.all(nodes.map((n) => getJson(n, "/v1/digest")));
  return digests.every((d) =>
    d.digest === digests[0].digest &&
    sameVersionVector(d.versionVector, digests[0].versionVector)
  );
}

/** Whether every node lists a replica for each of the others, none of them down or opening. */
export async function replicating(nodes: HttpNode[]): Promise<boolean> {
  for (const node of nodes) {
    const replicas = (await getJson(node, "/v1/replicas")).replicas as { status: string }[];
    if (replicas.length !== nodes.length - 1) return false;
    if (replicas.some((r) => r.status === "down" || r.status === "opening")) return false;
  }
  return true;
}
