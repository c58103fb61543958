/**
 * `backup verify`: re-checks one backup, or every backup in a folder of backups: the
 * manifest's own checksum and paths, every file's size and SHA-256, and that an incremental
 * backup's base is there.
 *
 * @module
 */
import {
  BACKUP_NAME_PATTERN,
  checkFile,
  listBackups,
  MANIFEST_FILE,
  readManifest,
} from "./manifest.ts";

export interface VerifyResult {
  /** The backup folder checked. */
  path: string;
  ok: boolean;
  kind?: "full" | "incremental";
  firstLsn?: number;
  lastLsn?: number;
  files: number;
  bytes: number;
  problems: string[];
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** Checks one backup folder. */
export async function verifyBackup(dir: string): Promise<VerifyResult> {
  const result: VerifyResult = { path: dir, ok: false, files: 0, bytes: 0, problems: [] };
  let manifest;
  try {
    manifest = await readManifest(dir);
  } catch (error) {
    result.problems.push((error as Error).message);
    return result;
  }
  Object.assign(result, {
    kind: manifest.kind,
    firstLsn: manifest.firstLsn,
    lastLsn: manifest.lastLsn,
  });
  for (const file of manifest.files) {
    const problem = await checkFile(dir, file);
    if (problem) result.problems.push(problem);
    result.files++;
    result.bytes += file.bytes;
  }
  if (manifest.base !== null) {
    const parent = dir.replace(/\/+$/, "").replace(/\/[^/]*$/, "") || ".";
    if (
      !BACKUP_NAME_PATTERN.test(manifest.base) ||
      !(await isFile(`${parent}/${manifest.base}/${MANIFEST_FILE}`))
    ) {
      result.problems.push(
        `base backup ${manifest.base} is missing: this incremental backup cannot be restored`,
      );
    }
  }
  result.ok = result.problems.length === 0;
  return result;
}

/** Checks `dir` as one backup when it holds a manifest, else every backup inside it. */
export async function verifyBackups(dir: string): Promise<VerifyResult[]> {
  if (await isFile(`${dir}/${MANIFEST_FILE}`)) return [await verifyBackup(dir)];
  const names = await listBackups(dir);
  const results: VerifyResult[] = [];
  for (const name of names) results.push(await verifyBackup(`${dir}/${name}`));
  return results;
}
