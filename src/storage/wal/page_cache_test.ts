import assert from "node:assert/strict";
import { WAL_DROP_BEHIND_STEP_BYTES } from "../../common/limits.ts";
import { LibcPageCacheAdvisor, type PageCacheAdvisor } from "./page_cache.ts";
import { type EntryInput, Wal, type WalOptions } from "./wal.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const PAGE = 4096;

function input(seq: number, bytes = 16 * KiB): EntryInput {
  return {
    origin: "n1",
    seq,
    hlc: seq,
    op: "append",
    key: "",
    value: new Uint8Array(bytes).fill(seq % 256),
    contentType: "",
    prevHlc: 0,
    prevOrigin: "",
  };
}

/** Appends `count` entries in batches of `batch`, each batch awaited (one fdatasync each). */
async function appendAll(wal: Wal, count: number, batch = 8): Promise<void> {
  for (let seq = 1; seq <= count; seq += batch) {
    const appends = [];
    for (let i = seq; i < Math.min(count + 1, seq + batch); i++) appends.push(wal.append(input(i)));
    await Promise.all(appends);
  }
}

class RecordingAdvisor implements PageCacheAdvisor {
  calls: { path: string; offset: number; length: number }[] = [];
  forgotten: string[] = [];
  unavailable: string | undefined;
  answer = true;
  dontNeed(path: string, offset: number, length: number): boolean {
    this.calls.push({ path, offset, length });
    return this.answer;
  }
  forget(path: string): void {
    this.forgotten.push(path);
  }
}

async function withWal(
  options: WalOptions,
  body: (wal: Wal, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "shanghai-wal-drop-" });
  const wal = await Wal.open(dir, { inlineSync: true, ...options });
  try {
    await body(wal, dir);
  } finally {
    await wal.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("Wal drops synced pages more than the kept bytes behind the newest record, across segments, in steps", async () => {
  const advisor = new RecordingAdvisor();
  const keep = 2 * MiB;
  await withWal(
    { dropBehindBytes: keep, pageCache: advisor, segmentBytesMax: 6 * MiB },
    async (wal) => {
      await appendAll(wal, 1000); // about 16 MiB: two segments sealed, a third active
      const segments = wal.segments();
      assert.equal(segments.length, 3, JSON.stringify(segments));
      // Record bytes (the active file also holds preallocated zeros past them).
      const sizes = segments.map((s) => s.bytes);
      const total = sizes.reduce((a, b) => a + b, 0);
      let dropped = 0;
      for (const [i, segment] of segments.entries()) {
        const calls = advisor.calls.filter((c) => c.path.endsWith(segment.fileName));
        // Contiguous from the start of the file and page-aligned; 0 (to the end) only last.
        let at = 0;
        for (const [k, call] of calls.entries()) {
          assert.equal(call.offset, at, `${segment.fileName} call ${k}`);
          assert.equal(call.offset % PAGE, 0);
          assert.equal(call.length % PAGE, 0);
          if (call.length === 0) {
            assert.equal(k, calls.length - 1, "to the end comes last");
            at = sizes[i];
          } else at += call.length;
        }
        dropped += at;
        const sealed = i < segments.length - 1;
        // Both sealed segments lie wholly more than `keep` behind: dropped whole, let go.
        if (sealed) {
          assert.equal(at, sizes[i], `${segment.fileName} dropped to its end`);
          assert.ok(advisor.forgotten.some((p) => p.endsWith(segment.fileName)));
        }
      }
      // What stays cached is the newest `keep` bytes, and at most one step more.
      const left = total - dropped;
      assert.ok(left >= keep && left < keep + WAL_DROP_BEHIND_STEP_BYTES + PAGE, `${left} left`);
      // One call per step (a step may end one segment and start the next), not per batch.
      assert.ok(
        advisor.calls.length <= total / WAL_DROP_BEHIND_STEP_BYTES + 3,
        `${advisor.calls.length}`,
      );
      // What was dropped from the cache is still on disk.
      const read = await wal.read(1, { limit: 3 });
      assert.deepEqual(read.map((e) => e.lsn), [1, 2, 3]);
      assert.deepEqual(read[0].value, input(1).value);
      // A segment retention removes is let go of as well.
      await wal.removeBefore(segments[2].firstLsn);
    },
  );
});

Deno.test("Wal never drops pages with dropBehindBytes 0, and says once when it cannot drop them", async () => {
  const advisor = new RecordingAdvisor();
  await withWal({ pageCache: advisor, segmentBytesMax: 2 * MiB }, async (wal) => {
    await appendAll(wal, 300);
    assert.ok(wal.segments().length > 1);
    assert.deepEqual(advisor.calls, []);
  });
  const failing = new RecordingAdvisor();
  failing.answer = false;
  failing.unavailable = "not here";
  const reasons: string[] = [];
  await withWal(
    {
      dropBehindBytes: 1 * MiB,
      pageCache: failing,
      onPageCacheUnavailable: (reason) => reasons.push(reason),
    },
    async (wal) => {
      await appendAll(wal, 600);
      assert.equal(await wal.append(input(601)), 601, "the WAL works on without");
    },
  );
  assert.ok(failing.calls.length > 1);
  assert.deepEqual(reasons, ["not here"]);
  await assert.rejects(() => Wal.open("/nonexistent", { dropBehindBytes: -1 }), /out of range/);
});

// Which pages of a file are in the page cache, asked of the kernel (mmap + mincore).
const mm = Deno.build.os === "linux"
  ? Deno.dlopen("libc.so.6", {
    open: { parameters: ["buffer", "i32"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
    mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
    munmap: { parameters: ["pointer", "usize"], result: "i32" },
    mincore: { parameters: ["pointer", "usize", "buffer"], result: "i32" },
  }).symbols
  : undefined;

const PROT_READ = 1;
const MAP_SHARED = 1;

function residentPages(path: string, from: number, to: number): number {
  const size = Deno.statSync(path).size;
  const fd = mm!.open(new TextEncoder().encode(`${path}\0`), 0);
  assert.ok(fd >= 0, `open ${path}`);
  const addr = mm!.mmap(null, BigInt(size), PROT_READ, MAP_SHARED, fd, 0n);
  assert.ok(addr !== null && Deno.UnsafePointer.value(addr) !== -1n, "mmap");
  const vector = new Uint8Array(Math.ceil(size / PAGE));
  assert.equal(mm!.mincore(addr, BigInt(size), vector), 0, "mincore");
  mm!.munmap(addr, BigInt(size));
  mm!.close(fd);
  let resident = 0;
  for (let page = Math.floor(from / PAGE); page < Math.ceil(to / PAGE); page++) {
    resident += vector[page] & 1;
  }
  return resident;
}

Deno.test({
  name: "Wal with libc's posix_fadvise: dropped ranges leave the page cache, kept ones stay",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const advisor = new LibcPageCacheAdvisor();
    const keep = 2 * MiB;
    let dropped = 0;
    const recording: PageCacheAdvisor = {
      dontNeed: (path, offset, length) => {
        dropped = offset + length;
        return advisor.dontNeed(path, offset, length);
      },
      forget: (path) => advisor.forget(path),
      get unavailable() {
        return advisor.unavailable;
      },
    };
    await withWal({ dropBehindBytes: keep, pageCache: recording }, async (wal) => {
      await appendAll(wal, 500); // about 8 MiB in one segment
      assert.equal(advisor.unavailable, undefined);
      const path = `${wal.dir}/${wal.segments()[0].fileName}`;
      assert.ok(dropped >= 4 * MiB, `dropped to ${dropped}`);
      // A hint the kernel takes for every page it can drop: a page still in another core's
      // batch of pages just added to the cache is left (one of 1,283 seen here).
      assertMostlyGone(path, 0, dropped);
      const end = Deno.statSync(path).size;
      const kept = residentPages(path, dropped, end - keep / 2);
      assert.ok(kept > 0, "the newest bytes stay cached");
    });
  },
});

Deno.test({
  name:
    "Wal with libc's posix_fadvise: a sealed segment wholly behind the kept bytes leaves the page cache to its end",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const advisor = new LibcPageCacheAdvisor();
    await withWal(
      { dropBehindBytes: 2 * MiB, pageCache: advisor, segmentBytesMax: 4 * MiB },
      async (wal) => {
        await appendAll(wal, 750); // about 12 MiB: two sealed segments, a third active
        assert.equal(advisor.unavailable, undefined);
        const segments = wal.segments();
        assert.equal(segments.length, 3, JSON.stringify(segments));
        // "To the end of the file" is a length of 0, which the advisor once refused: every
        // sealed segment kept its last 2 MiB cached.
        for (const segment of segments.slice(0, 2)) {
          const path = `${wal.dir}/${segment.fileName}`;
          assertMostlyGone(path, 0, Deno.statSync(path).size);
        }
      },
    );
  },
});

/** At most 1% of the pages of `from..to` (and one more) are still in the page cache. */
function assertMostlyGone(path: string, from: number, to: number): void {
  const pages = Math.ceil((to - from) / PAGE);
  const left = residentPages(path, from, to);
  assert.ok(left <= pages / 100 + 1, `${path}: ${left} of ${pages} dropped pages still cached`);
}
