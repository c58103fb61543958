/**
 * Free space on the file system holding a directory. Deno has no statfs of its own, so this
 * uses Node's `fs.promises.statfs`, which Deno implements; figures match `df`: used percent is
 * used / (used + available to unprivileged users).
 *
 * @module
 */
import { statfs } from "node:fs/promises";

export interface DiskUsage {
  totalBytes: number;
  /** Bytes an unprivileged process may still write (`df`'s "Avail"). */
  availableBytes: number;
  usedPercent: number;
}

/** Reads the usage of the file system holding `path`. */
export async function readDiskUsage(path: string): Promise<DiskUsage> {
  const s = await statfs(path);
  const used = (s.blocks - s.bfree) * s.bsize;
  const available = s.bavail * s.bsize;
  const usable = used + available;
  return {
    totalBytes: s.blocks * s.bsize,
    availableBytes: available,
    usedPercent: usable > 0 ? Math.round((used / usable) * 10000) / 100 : 0,
  };
}
