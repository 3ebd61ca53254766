import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { describe, it } from '../support/timedTests.js';
import { runProperty } from '../fuzz/runProperty.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe("the fuzzer's runner (test/fuzz/runProperty.ts)", () => {
  // fast-check returns at its time limit without waiting for the case in flight; left running, a case's invariants
  // (which stop and continue the service's processes) overlapped the next property's first case.
  it('returns only once the case in flight at the time limit has ended', { timeout: 10_000 }, async () => {
    let running = 0;
    let ended = 0;
    const runs = await runProperty(
      'unit: slow cases',
      fc.nat(),
      async () => {
        running += 1;
        // The first case ends before the limit (fast-check counts a run with none ended as failed), the second after.
        await sleep(ended === 0 ? 10 : 300);
        running -= 1;
        ended += 1;
      },
      { seed: 1, timeMs: 100 },
    );
    assert.equal(running, 0, 'a case still running');
    assert.equal(runs, 2);
    assert.equal(ended, 2);
  });

  it('reports a failure of the case the time limit cut off', { timeout: 10_000 }, async () => {
    let runs = 0;
    await assert.rejects(
      runProperty(
        'unit: a slow failure',
        fc.nat(),
        async () => {
          runs += 1;
          if (runs === 1) return;
          await sleep(300);
          throw new Error('found only after the time limit');
        },
        { seed: 1, timeMs: 100 },
      ),
      /fuzz property unit: a slow failure failed \(seed 1\) on its last case: found only after the time limit/,
    );
  });
});
