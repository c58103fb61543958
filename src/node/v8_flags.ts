/**
 * The V8 flags a node runs with. V8 reads them once, at process start, so they cannot be set
 * from here at run time (Deno's `node:v8` `setFlagsFromString` does not apply them): the
 * compile task bakes them into the binary (`deno compile --v8-flags`), and `deno task start`
 * and the test harness pass the same flags to `deno run`. Embedders of mod.ts choose their own.
 *
 * `--external-memory-max-growing-factor`: a node's values are ArrayBuffers, which V8 counts
 * as external memory, and by default it lets external memory grow only 10% (plus a fixed
 * slack of about 32 MiB) past what was live at the last full collection before it marks the
 * whole heap again. For a key-value store that treats the data set itself as pressure: on the
 * write benchmark a node ran a full mark every 1-2 s, and each marking took 20-30 ms of the
 * event loop's time in steps, which is where the 10-client p99 came from (docs/BENCHMARKS.md,
 * session 19). A factor of 2 lets dead values reach about as many bytes as the live ones
 * before the next full collection, as V8 already allows its own heap to grow by 1.1-4x.
 *
 * @module
 */

export const NODE_V8_FLAGS: readonly string[] = ["--external-memory-max-growing-factor=2"];

/** The `deno run` / `deno compile` argument that applies {@link NODE_V8_FLAGS}. */
export function v8FlagsArgument(): string {
  return `--v8-flags=${NODE_V8_FLAGS.join(",")}`;
}
