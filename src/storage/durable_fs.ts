/**
 * The few file operations every durable write in Shanghai is built from: write a whole buffer,
 * fsync a directory (so a create, rename or delete survives a crash), and replace a file
 * atomically (temp name, fsync, rename, directory fsync); plus the two questions asked before
 * one (is a name taken, what does a file hold now), and a whole file read at once.
 *
 * @module
 */

export async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await file.write(bytes.subarray(written));
}

/**
 * Writes a whole buffer with synchronous writes. For the WAL's batches: a write only copies into
 * the page cache (10-50 µs for 100 KiB), while an awaited write costs a thread hop (80-130 µs
 * measured) on every batch. The fdatasync that follows stays asynchronous, so the event loop
 * keeps serving while the disk works.
 */
export function writeAllSync(file: Deno.FsFile, bytes: Uint8Array): void {
  let written = 0;
  while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
}

/**
 * The whole file at `path`, read on this thread into one buffer of the size it had when opened
 * (a file must not grow while it is read: snapshots and sealed segments do not). For a 64 MiB
 * segment `Deno.readFile` took 500-700 ms on our VMs and this 215-263 ms: readFile reads into
 * buffers it grows and copies, and every first touch of fresh memory costs about 3 ms per MiB
 * here.
 */
export function readWholeFile(path: string): Uint8Array {
  const file = Deno.openSync(path, { read: true });
  try {
    return readFully(file, new Uint8Array(file.statSync().size));
  } finally {
    file.close();
  }
}

/** Fills `into` from the file's position on; returns the part filled (shorter at its end). */
export function readFully(file: Deno.FsFile, into: Uint8Array): Uint8Array {
  let at = 0;
  while (at < into.length) {
    const n = file.readSync(into.subarray(at));
    if (n === null) break;
    at += n;
  }
  return into.subarray(0, at);
}

export async function syncDir(path: string): Promise<void> {
  const dir = await Deno.open(path, { read: true });
  try {
    await dir.sync();
  } finally {
    dir.close();
  }
}

/** {@link syncDir} for callers that must not yield (a marker made durable inside a batch). */
export function syncDirSync(path: string): void {
  const dir = Deno.openSync(path, { read: true });
  try {
    dir.syncSync();
  } finally {
    dir.close();
  }
}

function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash > 0 ? path.slice(0, slash) : slash === 0 ? "/" : ".";
}

/** Writes `bytes` to `path` so that a crash leaves either the old file or the new one whole. */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  await writeFileAtomicWith(path, (file) => writeAll(file, bytes));
}

/**
 * Replaces `path` atomically with what `write` puts into a fresh file: temp name `<path>.tmp-*`,
 * fsync, rename, fsync of the parent directory. For files written piece by piece (snapshots),
 * so they need not be held in memory whole. A failed `write` removes the temp file and rethrows.
 */
export async function writeFileAtomicWith(
  path: string,
  write: (file: Deno.FsFile) => Promise<void>,
): Promise<void> {
  const temp = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  const file = await Deno.open(temp, { write: true, createNew: true });
  try {
    await write(file);
    await file.sync();
  } catch (error) {
    file.close();
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
  file.close();
  await Deno.rename(temp, path);
  await syncDir(parentOf(path));
}

/** A file's text, or undefined when it does not exist (other errors are thrown). */
export async function readTextIfExists(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/**
 * Whether `path` can be stat'ed now. Any error counts as absent, not only NotFound: callers ask
 * whether a name is free to take, and a name they cannot stat is not one they can rely on.
 */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
