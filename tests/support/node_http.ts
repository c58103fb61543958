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

/** Every live key `node` lists, with its version (`hlc.origin`), read page by page. */
export async function liveVersions(node: HttpNode): Promise<Map<string, string>> {
  const versions = new Map<string, string>();
  let after: string | null = null;
  do {
    const query = `/v1/kv?limit=10000${
      after === null ? "" : `&after=${encodeURIComponent(after)}`
    }`;
    const page = await getJson(node, query) as {
      items: { key: string; version: string }[];
      next: string | null;
    };
    for (const item of page.items) versions.set(item.key, item.version);
    after = page.next;
  } while (after !== null);
  return versions;
}

/**
 * The keys whose live version is not the same on every node (at most `max`), each with what
 * every node holds (`-` for absent): what a failed convergence check prints.
 */
export async function divergentKeys(
  nodes: HttpNode[],
  max = 20,
): Promise<{ key: string; versions: string[] }[]> {
  const views = await Promise.all(nodes.map(liveVersions));
  const keys = new Set(views.flatMap((view) => [...view.keys()]));
  const differing = [];
  for (const key of [...keys].sort()) {
    const versions = views.map((view) => view.get(key) ?? "-");
    if (versions.some((v) => v !== versions[0])) differing.push({ key, versions });
    if (differing.length === max) break;
  }
  return differing;
}
