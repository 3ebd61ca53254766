import { readFileSync, writeFileSync } from 'node:fs';
import { inspect } from 'node:util';
import fc from 'fast-check';

const REGRESSIONS = new URL('./regressions.json', import.meta.url);

/** Every case that ever failed, by property: replayed first in every run, as they were. */
type Regressions = Record<string, unknown[]>;

const readRegressions = (): Regressions => JSON.parse(readFileSync(REGRESSIONS, 'utf8')) as Regressions;

/** The seed of this run: FUZZ_SEED, or a new one with FUZZ_SEED=random, or CI's fixed one. */
export function fuzzSeed(): number {
  const asked = process.env.FUZZ_SEED;
  if (asked === 'random') return Math.floor(Math.random() * 2 ** 31);
  if (asked !== undefined && asked !== '') return Number(asked);
  return 20261203;
}

/** Seconds of fuzzing in all: FUZZ_SECONDS, about a minute by default (CI). */
export function fuzzSeconds(): number {
  return Number(process.env.FUZZ_SECONDS ?? 60);
}

/**
 * Runs one property: its regressions first, then new cases for `timeMs` (or until `maxRuns`), from `seed`. A failure
 * throws fast-check's report (seed, path, the shrunk case); outside CI the shrunk case is also added to
 * regressions.json, to be committed with its fix.
 */
export async function runProperty<T>(
  name: string,
  arbitrary: fc.Arbitrary<T>,
  check: (input: T) => Promise<void>,
  options: { readonly seed: number; readonly timeMs: number; readonly maxRuns?: number },
): Promise<number> {
  const examples = (readRegressions()[name] ?? []) as T[];
  let runs = 0;
  // fast-check stops waiting for the case in flight when the time runs out, and returns: left running, its requests
  // and its invariants (which stop and continue the service's processes) would overlap the next property's.
  let inFlight: { readonly input: T; readonly done: Promise<unknown> } | undefined;
  const details = await fc.check(
    fc.asyncProperty(arbitrary, async (input) => {
      runs += 1;
      const done = check(input);
      inFlight = { input, done: done.catch((error: unknown) => error) };
      await done;
    }),
    {
      seed: options.seed,
      numRuns: options.maxRuns ?? 1_000_000,
      interruptAfterTimeLimit: options.timeMs,
      markInterruptAsFailure: false,
      examples: examples.map((example) => [example] as [T]),
      endOnFailure: false,
    },
  );
  const last = inFlight;
  const lastFailure = last === undefined ? undefined : await last.done;
  if (!details.failed && last !== undefined && lastFailure !== undefined) {
    // The case the time limit cut off failed once it ended: fast-check no longer waited for it.
    const reason = lastFailure instanceof Error ? lastFailure.message : inspect(lastFailure);
    throw new Error(`fuzz property ${name} failed (seed ${options.seed}) on its last case: ${reason}\n${JSON.stringify(last.input)}`);
  }
  if (details.failed) {
    const [counterexample] = details.counterexample ?? [];
    if (process.env.CI !== 'true' && counterexample !== undefined) {
      const regressions = readRegressions();
      regressions[name] = [...(regressions[name] ?? []), counterexample];
      writeFileSync(REGRESSIONS, `${JSON.stringify(regressions, null, 2)}\n`);
    }
    const reason = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
    throw new Error(`fuzz property ${name} failed (seed ${options.seed}): ${reason}\n${fc.defaultReportMessage(details) ?? ''}`);
  }
  return runs;
}
