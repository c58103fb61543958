/**
 * The glibc tunable a node's process runs with: `glibc.malloc.hugetlb=1`, which has malloc ask
 * the kernel for transparent huge pages (`madvise(MADV_HUGEPAGE)`) on the memory it takes from
 * the system. Where the kernel's THP mode is `madvise` (Debian's default) nothing else gets huge
 * pages, and without it every fresh 4 KiB page a node touches is a page fault. A node's values are
 * byte buffers from malloc (V8's ArrayBuffer allocator), so a node taking in data keeps touching
 * fresh memory: on our VMs a fault costs 4-12 µs, and a follower catching up took 0.44 faults
 * per entry, 0.14-0.17 with the tunable (docs/BENCHMARKS.md, session 21).
 *
 * glibc reads tunables once, at process start, from the GLIBC_TUNABLES environment variable, so
 * a process cannot set it for itself: the systemd unit, `deno task start` and the test harness
 * set it. A binary started by hand runs without it unless its caller sets it. glibc before 2.35
 * ignores the name.
 *
 * @module
 */

export const NODE_GLIBC_TUNABLES = "glibc.malloc.hugetlb=1";

/**
 * GLIBC_TUNABLES for a node's process given the caller's value: {@link NODE_GLIBC_TUNABLES}
 * added to what is there, unless it already sets `glibc.malloc.hugetlb` (the caller's choice
 * stands, `glibc.malloc.hugetlb=0` included).
 */
export function nodeGlibcTunables(current: string | undefined): string {
  if (current === undefined || current.trim() === "") return NODE_GLIBC_TUNABLES;
  if (/(^|:)glibc\.malloc\.hugetlb=/.test(current)) return current;
  return `${current}:${NODE_GLIBC_TUNABLES}`;
}
