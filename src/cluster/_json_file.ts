/**
 * The small JSON files a data directory keeps beside its WAL (`node.json`, `cluster.json`):
 * read with a shape check, written durably (temp file, fsync, rename, directory fsync).
 *
 * @module
 */
import { ConfigError } from "../common/errors.ts";
import { readTextIfExists, writeFileAtomic } from "../storage/durable_fs.ts";

/**
 * Reads the JSON file at `path`, or undefined when there is none. `check` returns the value
 * or throws naming what is wrong; a file that does not parse or fails the check is refused
 * as a damaged data directory, with `advice` saying what the operator can do.
 */
export async function readJsonFile<T>(
  path: string,
  options: { check: (parsed: unknown) => T; advice: string },
): Promise<T | undefined> {
  const text = await readTextIfExists(path);
  if (text === undefined) return undefined;
  try {
    return options.check(JSON.parse(text));
  } catch (cause) {
    throw new ConfigError(
      "data-dir",
      `${path} is damaged (${(cause as Error).message}); ${options.advice}`,
    );
  }
}

/** Replaces the file at `path` with `value` as indented JSON, durably. */
export async function writeJsonFile(path: string, value: unknown): Promise<void> {
  await writeFileAtomic(path, new TextEncoder().encode(JSON.stringify(value, null, 2) + "\n"));
}
