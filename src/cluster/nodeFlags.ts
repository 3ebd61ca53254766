/**
 * The Node and V8 flags of the service's processes, measured with `npm run bench` (BENCHMARKS.md, sections 2 and 4).
 *
 * The primary's, which run.sh and the container image start it with: a young generation of 4 MB semi-spaces and an
 * old generation that grows by 10% before its next full collection keep the primary's memory bounded under a flood,
 * and V8's background work on one thread (`--v8-pool-size=1`) spares one process the memory of the threads it would
 * otherwise start per core. V8's memory-over-speed heuristics (`--optimize-for-size`, run.sh's flag before) cost the
 * primary, and the one process of `--workers 0`, a third or more of its CPU per valid registration. The primary
 * optimizes hot functions on the thread that runs them (`--no-concurrent-recompilation`): a background compiler
 * thread's memory, freed once a function is optimized, stayed in that thread's malloc arena, and an idle one-process
 * service took 59 MB in some starts and 63 MB in others; with the flag 59 MB in each, at the same CPU per valid
 * registration (measured side by side over six rounds).
 */
export const PRIMARY_NODE_FLAGS: readonly string[] = [
  '--max-semi-space-size=4',
  '--heap-growing-percent=10',
  '--v8-pool-size=1',
  '--no-concurrent-recompilation',
];

/**
 * The workers' V8 flags, measured under a flood of forged requests from ever-new addresses. A small young generation:
 * V8 otherwise grows it to 3 × 16 MB per worker (peak RSS ~115 → ~95 MB). A slow-growing old generation (heap grows
 * by 10% before the next full collection, not ~2×): peak RSS ~105 → ~80 MB, refusals/s unchanged within the noise.
 */
export const WORKER_V8_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--heap-growing-percent=10'];

/**
 * The primary's flags that workers do not get, though node:cluster would pass on everything the primary was started
 * with. `--optimize-for-size` (which run.sh gave the primary before) costs the workers, the refusal hot path, about 5%
 * of their refusals in the open case and 15% under the botnet load (BENCHMARKS.md, "workers also
 * --optimize-for-size"); the workers keep V8's default thread pool and compile in the background (a run with every
 * process compiling on its own thread refused fewer forged requests).
 */
const PRIMARY_ONLY_FLAGS: ReadonlySet<string> = new Set(['--optimize-for-size', '--v8-pool-size', '--no-concurrent-recompilation']);

const nameOf = (flag: string): string => flag.split('=')[0] ?? flag;

/** What a worker's Node is started with: the primary's flags but the primary-only ones and those the workers set. */
export function workerExecArgv(primaryExecArgv: readonly string[]): string[] {
  const own = new Set(WORKER_V8_FLAGS.map(nameOf));
  return [...primaryExecArgv.filter((flag) => !PRIMARY_ONLY_FLAGS.has(nameOf(flag)) && !own.has(nameOf(flag))), ...WORKER_V8_FLAGS];
}
