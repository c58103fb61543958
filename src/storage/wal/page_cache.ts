/**
 * Dropping synced WAL data from the OS page cache (`posix_fadvise(POSIX_FADV_DONTNEED)`).
 *
 * A WAL is written once and, past the newest few megabytes, read again only by a lagging
 * follower or a restart. Kept in the page cache, every byte a node writes holds a page of
 * memory the kernel had to find: on our machines (a nested virtual machine whose host takes back
 * memory the guest freed) a page touched for the first time costs about 5.5 µs against 0.9 µs
 * for one reused (`dd` of 1 GiB into a fresh file: 1.69 s of system time, then 0.23-0.25 s),
 * and a catching-up follower spent 47% of its samples zeroing fresh pages and copying into fresh
 * page-cache pages (docs/BENCHMARKS.md, session 31). Pages dropped right after their fdatasync
 * go back to the kernel's free lists while they are still warm, and the next batch's pages and
 * the heap's growth take them from there.
 *
 * Linux only, through Deno's FFI (libc's `open`, `posix_fadvise`, `close`; the node runs with
 * `--allow-ffi`). Anywhere the call cannot be made, nothing is dropped, the WAL works as before
 * and {@link PageCacheAdvisor.unavailable} says why.
 *
 * @module
 */
import { openLibc } from "../../common/libc.ts";

/** Drops cached pages of a file's byte range; answers false when it could not. */
export interface PageCacheAdvisor {
  /** `length` 0 reaches to the end of the file, as with posix_fadvise itself. */
  dontNeed(path: string, offset: number, length: number): boolean;
  /** Forgets `path` (its segment was removed or the WAL closed). */
  forget(path: string): void;
  /** Why nothing is dropped, once an attempt failed; undefined while it works. */
  readonly unavailable: string | undefined;
}

const POSIX_FADV_DONTNEED = 4;
const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;

const LIBC_SYMBOLS = {
  open: { parameters: ["buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  posix_fadvise: { parameters: ["i32", "i64", "i64", "i32"], result: "i32" },
} as const;

type Libc = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];

/**
 * The advisor over libc. Each segment gets a read-only descriptor of its own (the advice acts on
 * the file's cached pages, whichever descriptor names it), opened on first use.
 */
export class LibcPageCacheAdvisor implements PageCacheAdvisor {
  #libc: Libc | undefined;
  #unavailable: string | undefined;
  readonly #fds = new Map<string, number>();
  readonly #utf8 = new TextEncoder();

  get unavailable(): string | undefined {
    return this.#unavailable;
  }

  dontNeed(path: string, offset: number, length: number): boolean {
    if (this.#unavailable !== undefined || length < 0) return false;
    const libc = this.#load();
    if (libc === undefined) return false;
    let fd = this.#fds.get(path);
    if (fd === undefined) {
      fd = libc.open(this.#utf8.encode(`${path}\0`), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return false; // gone already (retention): nothing to drop
      this.#fds.set(path, fd);
    }
    return libc.posix_fadvise(fd, BigInt(offset), BigInt(length), POSIX_FADV_DONTNEED) === 0;
  }

  forget(path: string): void {
    const fd = this.#fds.get(path);
    if (fd === undefined) return;
    this.#fds.delete(path);
    this.#libc?.close(fd);
  }

  #load(): Libc | undefined {
    if (this.#libc !== undefined) return this.#libc;
    const libc = openLibc(LIBC_SYMBOLS);
    if ("problem" in libc) {
      this.#unavailable = libc.problem;
      return undefined;
    }
    return this.#libc = libc.symbols;
  }
}
