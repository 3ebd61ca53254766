import { readFileSync, writeFileSync } from 'node:fs';
import { inspect } from 'node:util';
import fc from 'fast-check';

const REGRESSIONS = new URL('./regressions.json', import.meta.url);

/** Every case that ever failed, by property: replayed first in every run, as they were. */
type Regressions = Record<string, unknown[]>;

const readRegressions = (file: URL): Regressions => JSON.parse(readFileSync(file, 'utf8')) as Regressions;

/** Adds a failed case to the regressions, outside CI (where it is committed with its fix). */
function record(file: URL, name: string, failed: unknown): void {
  if (process.env.CI === 'true') return;
  const regressions = readRegressions(file);
  regressions[name] = [...(regressions[name] ?? []), failed];
  writeFileSync(file, `${JSON.stringify(regressions, null, 2)}\n`);
}

/** How long the case in flight at the time limit may still take: each case's own requests are bounded well below. */
const IN_FLIGHT_BOUND_MS = 60_000;

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
 * regressions.json, to be committed with its fix. The case in flight when the time runs out is waited for (fast-check
 * returns without it, and, left running, its requests and invariants would overlap the next property's), and its
 * failure is reported and recorded as well.
 */
export async function runProperty<T>(
  name: string,
  arbitrary: fc.Arbitrary<T>,
  check: (input: T) => Promise<void>,
  options: { readonly seed: number; readonly timeMs: number; readonly maxRuns?: number; readonly regressions?: URL },
): Promise<number> {
  const file = options.regressions ?? REGRESSIONS;
  const examples = (readRegressions(file)[name] ?? []) as T[];
  let runs = 0;
  let inFlight: { readonly input: T; readonly done: Promise<unknown> } | undefined;
  const details = await fc.check(
    fc.asyncProperty(arbitrary, async (input) => {
      runs += 1;
      const done = check(input);
      inFlight = {
        input,
        done: done.then(
          () => undefined,
          (error: unknown) => error ?? new Error('failed'),
        ),
      };
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
  // Whatever fast-check decided, nothing of this property may still run when the next one starts (a shrinking run
  // can be cut off too).
  const last = inFlight;
  let bound: NodeJS.Timeout | undefined;
  const lastFailure =
    last === undefined
      ? undefined
      : await Promise.race([
          last.done,
          new Promise<Error>((resolve) => {
            bound = setTimeout(
              () => resolve(new Error(`it had not ended ${IN_FLIGHT_BOUND_MS / 1000} s after the time limit`)),
              IN_FLIGHT_BOUND_MS,
            );
          }),
        ]).finally(() => clearTimeout(bound));
  // Interrupted before fast-check saw a failure (with no case ended, it calls that a failure with no counterexample):
  // the case in flight decides.
  if (details.interrupted && (!details.failed || details.counterexample === null)) {
    if (last !== undefined && lastFailure !== undefined) {
      record(file, name, last.input);
      const reason = lastFailure instanceof Error ? lastFailure.message : inspect(lastFailure);
      throw new Error(
        `fuzz property ${name} failed (seed ${options.seed}) on the case in flight at its time limit: ${reason}\n${JSON.stringify(last.input)}`,
      );
    }
    return runs;
  }
  if (details.failed) {
    const [counterexample] = details.counterexample ?? [];
    if (counterexample !== undefined) record(file, name, counterexample);
    const reason = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
    throw new Error(`fuzz property ${name} failed (seed ${options.seed}): ${reason}\n${fc.defaultReportMessage(details) ?? ''}`);
  }
  return runs;
}
