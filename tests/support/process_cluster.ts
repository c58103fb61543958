/**
 * A cluster of real `shanghai serve` processes on loopback, for integration tests: each node
 * has a data directory of its own that a restart reuses, joins through a seed, and detects a
 * dead peer within about a second. `teardown()` kills every process, stopped ones included,
 * and removes the directories.
 *
 * @module
 */
import { replicating } from "./node_http.ts";
import { type NodeProcess, spawnNode, tempDir } from "./node_process.ts";
import { waitForNodes } from "./wait.ts";

/** Membership timings short enough for tests; the arguments below pass them to `serve`. */
export const HEARTBEAT_INTERVAL_MS = 100;
export const SUSPECT_AFTER_MS = 600;
export const DOWN_AFTER_MS = 1000;
export const FAST_MEMBERSHIP_ARGS: readonly string[] = [
  "--heartbeat-interval-ms",
  String(HEARTBEAT_INTERVAL_MS),
  "--suspect-after-ms",
  String(SUSPECT_AFTER_MS),
  "--down-after-ms",
  String(DOWN_AFTER_MS),
];

export interface ProcessClusterOptions {
  /** Start of each data directory's name; the node id follows. */
  dirPrefix: string;
  /** Arguments every node gets after the timings and `--join`. */
  args?: string[];
  /**
   * Where node `id` runs: the address it listens on and the network namespace it runs in
   * (tests/support/netns.ts). Default: 127.0.0.1 in this process's namespace.
   */
  placement?: (id: string) => { host: string; netns?: string } | undefined;
}

export class ProcessCluster {
  /** The latest process of each node id. */
  readonly nodes = new Map<string, NodeProcess>();
  /** Every process started, in order (their logs tell a failed run's story). */
  readonly started: NodeProcess[] = [];
  readonly #dirs = new Map<string, string>();
  readonly #options: ProcessClusterOptions;

  constructor(options: ProcessClusterOptions) {
    this.#options = options;
  }

  /** The data directory for `name` (a node id), made on first use, removed by teardown(). */
  async dataDir(name: string): Promise<string> {
    let dir = this.#dirs.get(name);
    if (dir === undefined) {
      dir = await tempDir(`${this.#options.dirPrefix}${name}-`);
      this.#dirs.set(name, dir);
    }
    return dir;
  }

  /** Empties node `id`'s data directory, as a replaced disk would; the node must not run. */
  async wipe(id: string): Promise<void> {
    const dir = await this.dataDir(id);
    for await (const entry of Deno.readDir(dir)) {
      await Deno.remove(`${dir}/${entry.name}`, { recursive: true });
    }
  }

  /** Starts node `id` on its data directory, joining through `seed` (or any of them) when given. */
  async start(id: string, seed?: NodeProcess | NodeProcess[]): Promise<NodeProcess> {
    const seeds = seed === undefined ? [] : Array.isArray(seed) ? seed : [seed];
    const addresses = seeds.map((s) => `${s.addr.slice(0, s.addr.lastIndexOf(":"))}:${s.nodePort}`);
    const join = addresses.length === 0 ? [] : ["--join", addresses.join(",")];
    const place = this.#options.placement?.(id);
    const node = await spawnNode({
      dataDir: await this.dataDir(id),
      host: place?.host,
      netns: place?.netns,
      args: ["--node-id", id, ...FAST_MEMBERSHIP_ARGS, ...join, ...(this.#options.args ?? [])],
    });
    this.nodes.set(id, node);
    this.started.push(node);
    return node;
  }

  /**
   * Starts `ids[0]`, then the others joining through it one at a time, and waits until every
   * one replicates to every other; resolves to their processes in `ids` order.
   */
  async startReplicating(ids: readonly string[]): Promise<NodeProcess[]> {
    const seed = await this.start(ids[0]);
    for (const id of ids.slice(1)) await this.start(id, seed);
    const nodes = ids.map((id) => this.nodes.get(id)!);
    await waitForNodes(`${ids.length} nodes replicating`, () => replicating(nodes));
    return nodes;
  }

  /**
   * Writes every process's whole log (one JSON line per record), one file per process in start
   * order, to a new temporary directory with `prefix`; resolves to the directory. A failed run
   * names it, so its story outlives the teardown.
   */
  async writeLogs(prefix: string): Promise<string> {
    const dir = await Deno.makeTempDir({ prefix });
    for (const [i, node] of this.started.entries()) {
      const lines = node.logs.map((line) => JSON.stringify(line)).join("\n");
      await Deno.writeTextFile(`${dir}/${String(i).padStart(3, "0")}-${node.nodeId}.log`, lines);
    }
    return dir;
  }

  /** Kills every node (waking stopped ones first) and removes every data directory. */
  async teardown(): Promise<void> {
    for (const node of this.nodes.values()) {
      try {
        node.child.kill("SIGCONT");
      } catch { /* gone */ }
      await node.kill("SIGKILL");
    }
    for (const dir of this.#dirs.values()) {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  }
}
