/**
 * The C library through Deno's FFI, for the few calls Deno has no API for (Linux only):
 * `posix_fadvise` (src/storage/wal/page_cache.ts) and `sched_setscheduler`
 * (src/node/idle_poll.ts, whose Worker loads libc by these names itself).
 *
 * @module
 */

/** glibc's names for itself, tried in order. */
export const LIBC_NAMES: readonly string[] = ["libc.so.6", "libc.so"];

/** libc's `symbols`, or why it cannot be loaded here (not Linux, no FFI permission, no libc). */
export function openLibc<S extends Deno.ForeignLibraryInterface>(
  symbols: S,
  names: readonly string[] = LIBC_NAMES,
): { symbols: Deno.DynamicLibrary<S>["symbols"] } | { problem: string } {
  if (Deno.build.os !== "linux") return { problem: `not on Linux (${Deno.build.os})` };
  const failures: string[] = [];
  for (const name of names) {
    try {
      return { symbols: Deno.dlopen(name, symbols).symbols };
    } catch (error) {
      failures.push(`${name}: ${(error as Error).message}`);
    }
  }
  return { problem: `cannot load libc (${failures.join("; ")})` };
}
