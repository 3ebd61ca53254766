import { strict as assert } from 'node:assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import fc from 'fast-check';
import { describe, it } from '../support/timedTests.js';
import { tempDir } from '../support/tempDir.js';
import { runProperty } from '../fuzz/runProperty.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
/** The time limit of these properties, and how long a slow case outlasts it. */
const LIMIT_MS = 300;
const SLOW_MS = 1200;

// fast-check returns at its time limit without waiting for the case in flight; left running, a case's invariants
// (which stop and continue the service's processes) overlapped the next property's first case.
describe("the fuzzer's runner (test/fuzz/runProperty.ts)", () => {
  const file = join(tempDir('regservice-run-property-'), 'regressions.json');
  /** An empty regressions file of the test's own (the runner records there, outside CI). */
  const emptyRegressions = (): URL => {
    writeFileSync(file, '{}\n');
    return pathToFileURL(file);
  };

  it('returns only once the case in flight at the time limit has ended', { timeout: 10_000 }, async () => {
    let running = 0;
    let ended = 0;
    const runs = await runProperty(
      'slow cases',
      fc.nat(),
      async () => {
        running += 1;
        await sleep(ended === 0 ? 10 : SLOW_MS);
        running -= 1;
        ended += 1;
      },
      { seed: 1, timeMs: LIMIT_MS, regressions: emptyRegressions() },
    );
    assert.equal(running, 0, 'a case still running');
    assert.equal(runs, 2);
    assert.equal(ended, 2);
  });

  it('lets the only case decide when the time limit cut it off (fast-check calls that a failure)', { timeout: 10_000 }, async () => {
    let ended = 0;
    const runs = await runProperty(
      'one slow case',
      fc.nat(),
      async () => {
        await sleep(SLOW_MS);
        ended += 1;
      },
      { seed: 1, timeMs: LIMIT_MS, regressions: emptyRegressions() },
    );
    assert.deepEqual([runs, ended], [1, 1]);
  });

  it('reports a failure of the case the time limit cut off, and records it outside CI', { timeout: 10_000 }, async () => {
    let runs = 0;
    let failed: number | undefined;
    await assert.rejects(
      runProperty(
        'a slow failure',
        fc.nat(),
        async (input) => {
          runs += 1;
          if (runs === 1) return;
          await sleep(SLOW_MS);
          failed = input;
          throw new Error('found only after the time limit');
        },
        { seed: 1, timeMs: LIMIT_MS, regressions: emptyRegressions() },
      ),
      /fuzz property a slow failure failed \(seed 1\) on the case in flight at its time limit: found only after the time limit/,
    );
    const recorded = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown[]>;
    assert.deepEqual(recorded, process.env.CI === 'true' ? {} : { 'a slow failure': [failed] });
  });
});
