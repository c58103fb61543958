import assert from "node:assert/strict";
import { Random } from "../../common/random.ts";
import {
  rebuildSortedKeys,
  SORT_STEP_UNITS,
  SORTED_CHUNK_KEYS,
  SortedKeyList,
} from "./sorted_keys.ts";

/** Runs a rebuild to its end; returns the list and how many times it yielded. */
function rebuild(
  list: SortedKeyList,
  added: string[],
  removed: string[],
  isGone: (key: string) => boolean,
  stepUnits: number,
): { list: SortedKeyList; steps: number } {
  const steps = rebuildSortedKeys(list, added, removed, isGone, stepUnits);
  for (let yielded = 0;; yielded++) {
    const step = steps.next();
    if (step.done) return { list: step.value, steps: yielded };
  }
}

/** The chunk invariants: none empty, none over twice the target, every key above the last. */
function assertWellFormed(list: SortedKeyList): void {
  let previous: string | undefined;
  let length = 0;
  for (const chunk of list.chunks) {
    assert.ok(chunk.length > 0, "no empty chunk");
    assert.ok(chunk.length <= 2 * SORTED_CHUNK_KEYS, `chunk of ${chunk.length} keys`);
    for (const key of chunk) {
      if (previous !== undefined) assert.ok(previous < key, `${previous} before ${key}`);
      previous = key;
    }
    length += chunk.length;
  }
  assert.equal(list.length, length);
}

const sortedUnique = (keys: Iterable<string>) => [...new Set(keys)].sort();

Deno.test("rebuildSortedKeys() gives the sorted union less the gone keys, in steps or at once, over 60 seeds", () => {
  for (let seed = 1; seed <= 60; seed++) {
    const rng = new Random(seed);
    const universe = 200 + rng.int(6_000);
    const keyOf = (n: number) => `k/${n.toString(36)}/${n % 7}`;
    const held = new Set<string>();
    let list = SortedKeyList.EMPTY;
    for (let round = 0; round < 4; round++) {
      // New keys with repeats, some already held; collected keys, some written again since.
      const added: string[] = [];
      const addCount = rng.int(universe);
      for (let n = 0; n < addCount; n++) added.push(keyOf(rng.int(universe)));
      const removed: string[] = [];
      for (const key of held) if (rng.chance(0.2)) removed.push(key);
      const writtenAgain = new Set(removed.filter(() => rng.chance(0.3)));
      for (const key of added) held.add(key);
      for (const key of removed) if (!writtenAgain.has(key)) held.delete(key);
      const isGone = (key: string) => !held.has(key);
      const stepUnits = rng.chance(0.5) ? Infinity : 50 + rng.int(SORT_STEP_UNITS);
      const result = rebuild(list, added, removed, isGone, stepUnits);
      assertWellFormed(result.list);
      assert.deepEqual([...result.list], sortedUnique(held), `seed ${seed}, round ${round}`);
      if (stepUnits === Infinity) assert.equal(result.steps, 0);
      list = result.list;
    }
  }
});

Deno.test("SortedKeyList.keysFrom() starts at the first key not below its argument", () => {
  const keys = Array.from({ length: 5_000 }, (_, n) => `key-${String(n).padStart(5, "0")}`);
  const { list } = rebuild(SortedKeyList.EMPTY, keys, [], () => false, 1_000);
  assert.ok(list.chunks.length > 2, "several chunks");
  assert.deepEqual([...list.keysFrom("key-02047")].slice(0, 2), ["key-02047", "key-02048"]);
  assert.deepEqual([...list.keysFrom("key-02047x")].slice(0, 1), ["key-02048"]);
  assert.deepEqual([...list.keysFrom("a")].length, 5_000);
  assert.deepEqual([...list.keysFrom("z")], []);
  assert.deepEqual([...SortedKeyList.EMPTY.keysFrom("a")], []);
});

Deno.test("rebuildSortedKeys() copies only the chunks a change falls into", () => {
  const keys = Array.from({ length: 100_000 }, (_, n) => `key-${String(n).padStart(6, "0")}`);
  const { list } = rebuild(SortedKeyList.EMPTY, keys, [], () => false, Infinity);
  const next = rebuild(list, ["key-050000x"], ["key-070000"], (key) => key === "key-070000", 1);
  assert.equal(next.list.length, 100_000);
  const kept = new Set(list.chunks);
  const copied = next.list.chunks.filter((chunk) => !kept.has(chunk));
  assert.ok(copied.length <= 4, `${copied.length} chunks copied for two changes`);
  // A unit per chunk passed on, and per key of a chunk copied: far below one per key held.
  const bound = list.chunks.length + 4 * SORTED_CHUNK_KEYS;
  assert.ok(next.steps < bound, `${next.steps} steps of one unit (bound ${bound})`);
  assert.ok(!next.list.chunks.some((chunk) => chunk.includes("key-070000")));
  assert.ok(next.list.chunks.some((chunk) => chunk.includes("key-050000x")));
  assert.deepEqual([...list].length, 100_000, "the old list is unchanged");
});

Deno.test("rebuildSortedKeys() takes a collected key out only if it is still gone when reached", () => {
  const { list } = rebuild(SortedKeyList.EMPTY, ["a", "b", "c", "d"], [], () => false, Infinity);
  const gone = new Set(["b", "d"]);
  const asked: string[] = [];
  const steps = rebuildSortedKeys(list, [], ["d", "x", "b"], (key) => {
    asked.push(key);
    return gone.has(key);
  }, 1);
  let step = steps.next();
  while (!step.done && !asked.includes("b")) step = steps.next();
  assert.ok(!step.done, "still running after b");
  gone.delete("d"); // d is written again between steps
  while (!step.done) step = steps.next();
  assert.deepEqual([...step.value], ["a", "c", "d"]);
  assert.deepEqual(asked, ["b", "d"], "x is in the list nowhere: never asked");
});

Deno.test("rebuildSortedKeys() keeps chunks few when keys arrive one at a time at either end", () => {
  let list = SortedKeyList.EMPTY;
  for (let n = 0; n < 3_000; n++) {
    const key = n % 2 === 0 ? `z-${String(n).padStart(5, "0")}` : `a-${String(9_999 - n)}`;
    list = rebuild(list, [key], [], () => false, n % 3 === 0 ? Infinity : 7).list;
  }
  assertWellFormed(list);
  assert.equal(list.length, 3_000);
  const bound = Math.ceil(3_000 / 256) + 2;
  assert.ok(list.chunks.length <= bound, `${list.chunks.length} chunks (bound ${bound})`);
});
