/**
 * `shanghai serve`: run a node until SIGINT or SIGTERM, then stop cleanly.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { ShanghaiError } from "../src/common/errors.ts";
import { readConfigFile, resolveConfig, SETTINGS } from "../src/node/config.ts";
import { ShanghaiNode } from "../src/node/node.ts";
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE } from "./exit_codes.ts";
import { CliError, type CliIo } from "./io.ts";

export function serveHelp(): string {
  const rows = SETTINGS.map((s) => {
    const flag = `  --${s.flag}${
      s.kind === "int"
        ? " N"
        : s.kind === "string" || s.kind === "list"
        ? " VALUE"
        : ` ${s.values?.join("|")}`
    }`;
    const def = s.default !== undefined && !(Array.isArray(s.default) && s.default.length === 0)
      ? ` [default: ${s.default}]`
      : "";
    const env = s.env ? ` (env ${s.env})` : "";
    return `${flag.padEnd(40)} ${s.help}${def}${env}`;
  });
  return [
    "Usage: shanghai serve [options]",
    "",
    "Runs a node: recovers the WAL in the data directory, then serves the HTTP API and node port.",
    "Settings come from flags, then SHANGHAI_* environment variables, then --config FILE (JSON),",
    "then defaults. SIGINT or SIGTERM stops the node cleanly (in-flight writes finish and fsync);",
    "a second one during the stop exits at once (code 1): every acknowledged write is on disk.",
    "",
    "Options:",
    `  --config FILE${
      " ".repeat(26)
    } JSON file of settings (keys as below, camelCase or flag form)`,
    ...rows,
    "  -h, --help                               Show this help",
  ].join("\n");
}

export async function serve(args: string[], io: CliIo): Promise<number> {
  const parseOptions: Record<string, { type: "string" | "boolean"; short?: string }> = {
    config: { type: "string" },
    help: { type: "boolean", short: "h" },
  };
  for (const s of SETTINGS) parseOptions[s.flag] = { type: "string" };
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args,
      options: parseOptions,
      allowPositionals: false,
      strict: true,
    }));
  } catch (error) {
    throw new CliError(`${(error as Error).message}; see shanghai serve --help`, EXIT_USAGE);
  }
  if (values.help) {
    io.out(serveHelp());
    return EXIT_OK;
  }
  // Listen before the node starts: a signal that arrives while it starts, or just after its
  // "Node ready" line, still stops it cleanly instead of killing the process.
  const stopped = Promise.withResolvers<void>();
  const started: { node?: ShanghaiNode } = {};
  let signals = 0;
  const onSignal = () => {
    // The second signal cuts a stop short (a drain waiting out an ack timeout, a long snapshot),
    // as a SIGKILL would: every acknowledged write was fsynced, and the restart replays the WAL.
    if (++signals > 1) {
      const message =
        "Second signal during the stop: exiting now, without the closing snapshot; acknowledged writes are on disk";
      if (started.node) started.node.logger.warn(message);
      else console.error(`shanghai: ${message}`);
      Deno.exit(EXIT_FAILED);
    }
    stopped.resolve();
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    return await serveUntilStopped(values, io, stopped.promise, started);
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

async function serveUntilStopped(
  values: Record<string, string | boolean | undefined>,
  io: CliIo,
  stopped: Promise<void>,
  started: { node?: ShanghaiNode },
): Promise<number> {
  let node: ShanghaiNode;
  try {
    const file = typeof values.config === "string" ? await readConfigFile(values.config) : {};
    const flags = Object.fromEntries(
      Object.entries(values).filter(([k]) => k !== "config" && k !== "help"),
    ) as Record<string, string>;
    const config = resolveConfig(flags, io.env, file);
    node = await ShanghaiNode.start(config);
    started.node = node;
  } catch (error) {
    if (error instanceof ShanghaiError) {
      throw new CliError(error.message, error.code === "config" ? EXIT_USAGE : EXIT_FAILED);
    }
    if (error instanceof Deno.errors.AddrInUse) {
      throw new CliError(
        `Cannot listen: ${(error as Error).message}; pick another --admin-port or --port`,
        EXIT_USAGE,
      );
    }
    throw error;
  }
  // A node that left its cluster (`shanghai node leave`) asks to stop, like a signal.
  // A node that found its directory rolled back asks to stop too, and exits 1 so that a
  // supervisor (systemd's Restart=on-failure) starts it again under its new origin.
  await Promise.race([stopped, node.stopRequested]);
  await node.stop();
  return node.stopFailed ? EXIT_FAILED : EXIT_OK;
}
