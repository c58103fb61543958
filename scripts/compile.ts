/**
 * `deno task compile [--release] [--target TRIPLE]...`: builds the single `shanghai` binary.
 *
 * - default: linux-x64 into `dist/shanghai`;
 * - `--release`: every release target into `dist/shanghai-<target>[.exe]`, plus `SHA256SUMS`;
 * - `--target T`: just that target (repeatable).
 *
 * `deno compile` joins the program to Deno's runtime (`denort`), which it downloads from
 * dl.deno.land unless `DENORT_BIN` names a local copy (host target only). Where that download
 * is impossible this script says SKIPPED for the target and exits 3: it never claims a binary
 * it did not build. Exit codes: 0 every target built, 1 a build failed, 3 some target skipped
 * because the runtime could not be obtained (and none failed otherwise).
 *
 * The binary reads nothing from the source tree at run time: everything it needs is imported
 * as modules (version, help texts, defaults), so it runs from any directory.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createHash } from "node:crypto";
import { v8FlagsArgument } from "../src/node/v8_flags.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const DIST = `${ROOT}dist`;
const HOST_TARGET = "x86_64-unknown-linux-gnu";
/** Release matrix: Deno's compile targets. */
export const RELEASE_TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
  "x86_64-pc-windows-msvc",
] as const;
/**
 * What the node needs: files, sockets, env (config, OTEL_*), sys (hostname, statfs), ffi (libc's
 * posix_fadvise, to drop synced WAL pages from the page cache: src/storage/wal/page_cache.ts).
 */
const PERMISSIONS = [
  "--allow-read",
  "--allow-write",
  "--allow-net",
  "--allow-env",
  "--allow-sys",
  "--allow-ffi",
];
const EXIT_BUILD_FAILED = 1;
const EXIT_SKIPPED = 3;

type Outcome = { target: string; status: "built"; path: string; bytes: number; sha256: string } | {
  target: string;
  status: "skipped" | "failed";
  reason: string;
};

function outputPath(target: string, release: boolean): string {
  if (!release && target === HOST_TARGET) return `${DIST}/shanghai`;
  return `${DIST}/shanghai-${target}${target.includes("windows") ? ".exe" : ""}`;
}

/** True when the failure is the runtime download (offline, DNS, proxy), not our code. */
export function isRuntimeDownloadFailure(stderr: string): boolean {
  return /dl\.deno\.land|denort|error sending request|dns error|failed to lookup address/i.test(
    stderr,
  );
}

async function sha256File(path: string): Promise<string> {
  return createHash("sha256").update(await Deno.readFile(path)).digest("hex");
}

/** The `deno` arguments that build `target` into `output`. */
export function compileArgs(target: string, output: string): string[] {
  return [
    "compile",
    ...PERMISSIONS,
    v8FlagsArgument(), // baked into the binary, as `deno task start` passes them
    "--target",
    target,
    "--output",
    output,
    `${ROOT}main.ts`,
  ];
}

async function build(target: string, release: boolean): Promise<Outcome> {
  const output = outputPath(target, release);
  const args = compileArgs(target, output);
  const result = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  })
    .output();
  const stderr = new TextDecoder().decode(result.stderr);
  if (result.code !== 0) {
    const lines = stderr.split("\n").map((l) => l.replace(/^\d+:\s*/, "").trim()).filter((l) =>
      l.length > 0
    );
    const download = lines.find((l) => /error sending request|dns error/i.test(l));
    const reason = download ??
      lines.filter((l) => !/^(Compile|Download|Stack backtrace|<unknown>)/.test(l)).slice(0, 3)
        .join(" | ");
    return { target, status: isRuntimeDownloadFailure(stderr) ? "skipped" : "failed", reason };
  }
  if (target === HOST_TARGET && Deno.build.os === "linux" && Deno.build.arch === "x86_64") {
    // Smoke test: the binary starts and knows its version without the source tree.
    const smoke = await new Deno.Command(output, {
      args: ["--version"],
      cwd: "/",
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (smoke.code !== 0) {
      return {
        target,
        status: "failed",
        reason: `built, but '${output} --version' exited ${smoke.code}`,
      };
    }
  }
  return {
    target,
    status: "built",
    path: output,
    bytes: (await Deno.stat(output)).size,
    sha256: await sha256File(output),
  };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      release: { type: "boolean" },
      target: { type: "string", multiple: true },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(
      "Usage: deno task compile [--release] [--target TRIPLE]...\nTargets: " +
        RELEASE_TARGETS.join(", "),
    );
    return 0;
  }
  const release = values.release ?? false;
  const targets = values.target ?? (release ? [...RELEASE_TARGETS] : [HOST_TARGET]);
  await Deno.mkdir(DIST, { recursive: true });
  if (Deno.env.get("DENORT_BIN")) {
    console.log(`compile: using the local runtime DENORT_BIN=${Deno.env.get("DENORT_BIN")}`);
  }
  const outcomes: Outcome[] = [];
  for (const target of targets) {
    const outcome = await build(target, release);
    outcomes.push(outcome);
    if (outcome.status === "built") {
      console.log(
        `compile: BUILT ${outcome.target} -> ${outcome.path} (${outcome.bytes} bytes, sha256 ${outcome.sha256})`,
      );
    } else if (outcome.status === "skipped") {
      console.log(
        `compile: SKIPPED ${outcome.target}: Deno's runtime (denort) could not be downloaded: ${outcome.reason}. ` +
          `No binary was built. Build where dl.deno.land is reachable, or set DENORT_BIN to a local denort for the host target.`,
      );
    } else {
      console.log(`compile: FAILED ${outcome.target}: ${outcome.reason}`);
    }
  }
  const built = outcomes.filter((o) => o.status === "built");
  if (release && built.length > 0) {
    const sums = built.map((o) =>
      `${(o as { sha256: string }).sha256}  ${(o as { path: string }).path.slice(DIST.length + 1)}`
    ).join("\n");
    await Deno.writeTextFile(`${DIST}/SHA256SUMS`, sums + "\n");
  }
  const failed = outcomes.filter((o) => o.status === "failed").length;
  const skipped = outcomes.filter((o) => o.status === "skipped").length;
  console.log(`compile: ${built.length} built, ${skipped} skipped, ${failed} failed`);
  if (failed > 0) return EXIT_BUILD_FAILED;
  if (skipped > 0) return EXIT_SKIPPED;
  return 0;
}

if (import.meta.main) Deno.exit(await main());
