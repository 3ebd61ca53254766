import { readFileSync, writeFileSync } from 'node:fs';
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
  const details = await fc.check(
    fc.asyncProperty(arbitrary, async (input) => {
      runs += 1;
      await check(input);
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
