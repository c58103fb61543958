/**
 * Test helper: a command line that runs `command` with no file it writes allowed past a size
 * (`ulimit -f`, with SIGXFSZ ignored), so a write that would cross it fails with EFBIG, the way
 * a full disk fails it with ENOSPC. A real failure from the kernel, not a mock. bash `exec`s the
 * command, so the child's pid is the command's.
 *
 * @module
 */

/** `bash -c ...` arguments that run `command args...` under a file size limit of `fileBytesMax`. */
export function withFileBytesMax(
  fileBytesMax: number,
  command: string,
  args: readonly string[],
): { command: string; args: string[] } {
  const blocks = Math.floor(fileBytesMax / 1024); // bash counts ulimit -f in 1 KiB blocks
  return {
    command: "bash",
    args: ["-c", `trap '' XFSZ; ulimit -f ${blocks} && exec "$0" "$@"`, command, ...args],
  };
}
