/**
 * Starts real `shanghai serve` processes (as `deno run main.ts serve`) for integration tests.
 * Ports are 0 by default: the node picks free ones and reports them on its "Node ready" log
 * line, which this helper waits for, so parallel tests never race for a port.
 *
 * @module
 */

import { v8FlagsArgument } from "../../src/node/v8_flags.ts";
import { withFileBytesMax } from "../../src/common/_file_bytes_limit.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const READY_TIMEOUT_MS = 30_000;

export interface NodeProcess {
  /** HTTP address, host:port. */
  addr: string;
  /** The same as a URL, `http://host:port`. */
  url: string;
  httpPort: number;
  /** Node-to-node port, when the node reports one. */
  nodePort?: number;
  nodeId: string;
  readyLine: Record<string, unknown>;
  child: Deno.ChildProcess;
  /** Every log line so far (stderr), parsed as JSON where possible. */
  logs: Record<string, unknown>[];
  kill(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
  /** SIGTERM and wait for a clean exit. */
  stop(): Promise<Deno.CommandStatus>;
  status: Promise<Deno.CommandStatus>;
}

export interface SpawnOptions {
  dataDir: string;
  args?: string[];
  env?: Record<string, string>;
  readyTimeoutMs?: number;
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** Run inside this network namespace (`ip netns exec`; needs root). */
  netns?: string;
  /**
   * No file the node writes may grow past this many bytes (`ulimit -f`, SIGXFSZ ignored): a
   * write that would fails with EFBIG, as a full disk fails it with ENOSPC. Not with `netns`.
   */
  fileBytesMax?: number;
}

export async function spawnNode(options: SpawnOptions): Promise<NodeProcess> {
  const args = [
    "run",
    "--allow-all",
    v8FlagsArgument(), // as the compiled binary runs (src/node/v8_flags.ts)
    MAIN,
    "serve",
    "--data-dir",
    options.dataDir,
    "--host",
    options.host ?? "127.0.0.1",
    "--log-format",
    "json",
    ...(options.args ?? []),
  ];
  if (!args.includes("--admin-port")) args.push("--admin-port", "0");
  if (!args.includes("--port")) args.push("--port", "0");
  // `ip netns exec` and bash's `exec` exec the command, so the child's pid is the node's.
  let command = Deno.execPath();
  let commandArgs = args;
  if (options.netns) {
    command = "ip";
    commandArgs = ["netns", "exec", options.netns, Deno.execPath(), ...args];
  } else if (options.fileBytesMax !== undefined) {
    ({ command, args: commandArgs } = withFileBytesMax(options.fileBytesMax, command, args));
  }
  const child = new Deno.Command(command, {
    args: commandArgs,
    env: {
      NO_COLOR: "1",
      ...(options.env ?? {}),
    },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const logs: Record<string, unknown>[] = [];
  const ready = Promise.withResolvers<Record<string, unknown>>();
  const status = child.status;
  (async () => {
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of child.stderr) {
      buffered += decoder.decode(chunk, { stream: true });
      let newline;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        let parsed: Record<string, unknown>;
        try {
          parsed = JSON.parse(line);
        } catch {
          parsed = { msg: line };
        }
        logs.push(parsed);
        if (parsed.msg === "Node ready") ready.resolve(parsed);
      }
    }
  })().catch(() => {});
  status.then((s) =>
    ready.reject(
      new Error(`serve exited with ${s.code} before ready: ${JSON.stringify(logs.slice(-5))}`),
    )
  );
  const timer = setTimeout(
    () =>
      ready.reject(
        new Error(
          `serve not ready within ${options.readyTimeoutMs ?? READY_TIMEOUT_MS} ms: ${
            JSON.stringify(logs.slice(-5))
          }`,
        ),
      ),
    options.readyTimeoutMs ?? READY_TIMEOUT_MS,
  );
  let readyLine: Record<string, unknown>;
  try {
    readyLine = await ready.promise;
  } catch (error) {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    await status;
    throw error;
  } finally {
    clearTimeout(timer);
  }
  const httpPort = Number(readyLine.httpPort);
  const addr = `${options.host ?? "127.0.0.1"}:${httpPort}`;
  return {
    addr,
    url: `http://${addr}`,
    httpPort,
    nodePort: readyLine.nodePort === undefined ? undefined : Number(readyLine.nodePort),
    nodeId: String(readyLine.nodeId),
    readyLine,
    child,
    logs,
    status,
    async kill(signal: Deno.Signal = "SIGKILL") {
      try {
        child.kill(signal);
      } catch { /* already exited */ }
      return await status;
    },
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* already exited */ }
      return await status;
    },
  };
}

/** Runs the CLI as a separate process and returns its exit code and output. */
export async function runCli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

export async function tempDir(prefix = "shanghai-test-"): Promise<string> {
  return await Deno.makeTempDir({ prefix });
}

/**
 * Starts a node with small segments, batches and values, so that segment rotation and
 * snapshots every `snapshotEveryBytes` (and retention, given `--retain-bytes 0` in `args`)
 * happen within a few hundred writes.
 */
export function spawnSmallSegmentNode(
  dataDir: string,
  options: { snapshotEveryBytes: number; args?: string[] },
): Promise<NodeProcess> {
  return spawnNode({
    dataDir,
    args: [
      "--segment-bytes",
      "131072",
      "--batch-bytes-max",
      "65536",
      "--value-bytes-max",
      "4096",
      "--snapshot-every-bytes",
      String(options.snapshotEveryBytes),
      // Snapshots at that pace whatever the data set's size: these tests count on them.
      "--snapshot-wal-percent",
      "0",
      ...(options.args ?? []),
    ],
  });
}
