/**
 * The layers of docs/ARCHITECTURE.md import downward only: a module under src/ imports modules
 * of its own layer or of layers below it, never one above it and never cli/, main.ts, mod.ts
 * or tests/. Unit tests beside the modules may import anything (fakes, other layers).
 */
import assert from "node:assert/strict";

/** Lowest first, as in the layer table of docs/ARCHITECTURE.md. */
const LAYERS = [
  "common",
  "telemetry",
  "storage",
  "cluster",
  "replication",
  "backup",
  "api",
  "node",
] as const;

const SRC = new URL("../src/", import.meta.url);

/** `import`/`export ... from "x"` at the start of a line, `import "x"` and `import("x")`. */
const IMPORT = new RegExp(
  [
    /^\s*(?:import|export)\s+(?:type\s+)?(?:[\w$]+\s*,\s*)?(?:\{[^}]*\}|\*(?:\s+as\s+[\w$]+)?|[\w$]+)\s*from\s*["']([^"']+)["']/
      .source,
    /^\s*import\s*["']([^"']+)["']/.source,
    /\bimport\s*\(\s*["']([^"']+)["']\s*\)/.source,
  ].join("|"),
  "gm",
);

async function* sourceFiles(dir: URL): AsyncGenerator<URL> {
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isDirectory) yield* sourceFiles(new URL(`${entry.name}/`, dir));
    else if (entry.name.endsWith(".ts") && !entry.name.endsWith("_test.ts")) {
      yield new URL(entry.name, dir);
    }
  }
}

/** The layer of a file under src/, or undefined for anything outside it. */
function layerOf(file: URL): number | undefined {
  if (!file.href.startsWith(SRC.href)) return undefined;
  const layer = file.href.slice(SRC.href.length).split("/")[0];
  const rank = LAYERS.indexOf(layer as typeof LAYERS[number]);
  assert.ok(rank >= 0, `src/${layer}/ is in no layer of docs/ARCHITECTURE.md`);
  return rank;
}

Deno.test("src/ layers import downward only", async () => {
  const upward: string[] = [];
  let checked = 0;
  for await (const file of sourceFiles(SRC)) {
    const rank = layerOf(file)!;
    const text = await Deno.readTextFile(file);
    const specifiers = text.matchAll(IMPORT);
    for (const match of specifiers) {
      const specifier = match[1] ?? match[2] ?? match[3];
      if (!specifier.startsWith(".")) continue; // npm: and node: packages
      const target = new URL(specifier, file);
      const targetRank = layerOf(target);
      if (targetRank === undefined || targetRank > rank) {
        const from = file.href.slice(SRC.href.length);
        upward.push(`src/${from} imports ${specifier}`);
      }
    }
    checked++;
  }
  assert.ok(checked > 50, `found the sources (${checked} files)`);
  assert.deepEqual(upward, [], "imports that point up a layer or out of src/");
});
