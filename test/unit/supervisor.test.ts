import { strict as assert } from 'node:assert';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { tempDir } from '../support/tempDir.js';
import { MAX_FAILED_STARTS, StartError, Supervisor } from '../../src/cluster/supervisor.js';
import { resolveSettings } from '../../src/config/settings.js';
import { capturingLogger } from '../support/capturingLogger.js';
import { waitFor } from '../support/ports.js';

const FIXTURE = new URL('../support/fixtureWorker.mjs', import.meta.url).pathname;
const settings = resolveSettings([
  { source: 'test', values: { matrixdomain: 'hs', sharesecret: 's', astoken: 'a', hstoken: 'h' } },
]).settings;

function supervisor(count: number, onCrashLoop: (reason: string) => void = () => {}) {
  const logger = capturingLogger();
  return {
    logger,
    supervisor: new Supervisor({ count, exec: FIXTURE, settings, handlers: {}, log: logger.log, onCrashLoop, stopTimeoutMs: 5000 }),
  };
}

describe('Supervisor with real worker processes (node:cluster)', () => {
  const dir = tempDir('regservice-supervisor-');
  const failFile = join(dir, 'fail');
  process.env.FIXTURE_FAIL_FILE = failFile;

  it('replaces a worker that dies, and stops the service when replacements keep failing to start', async () => {
    let crashLoop: string | undefined;
    const { supervisor: workers, logger } = supervisor(2, (reason) => (crashLoop = reason));
    await workers.start();
    assert.equal(workers.listening, 2);

    const pids = await waitFor(
      'two worker pids',
      async () => {
        const lines = logger.lines().filter((line) => /worker listening/.test(line));
        return lines.length === 2 ? lines.map((line) => Number(/pid=(\d+)/.exec(line)?.[1])) : undefined;
      },
      5000,
    );
    process.kill(pids[0]!, 'SIGKILL');
    await waitFor(
      'a replacement',
      async () => (logger.lines().filter((line) => /worker listening/.test(line)).length === 3 ? true : undefined),
      10_000,
    );
    assert.ok(logger.lines().some((line) => new RegExp(`pid ${pids[0]}\\) exited with signal SIGKILL; starting a replacement`).test(line)));
    assert.equal(workers.listening, 2);

    writeFileSync(failFile, '');
    process.kill(pids[1]!, 'SIGKILL');
    const reason = await waitFor('the crash loop', async () => crashLoop, 15_000);
    assert.equal(reason, `${MAX_FAILED_STARTS} workers in a row failed to start; the last: the fixture was told to fail`);
    await workers.stop();
    rmSync(failFile);
  });

  it('fails the start with the reason a worker gave, and stop() ends every worker', async () => {
    writeFileSync(failFile, '');
    const { supervisor: failing } = supervisor(2);
    await assert.rejects(
      failing.start(),
      (error: unknown) => error instanceof StartError && error.message === 'the fixture was told to fail',
    );
    await failing.stop();
    rmSync(failFile);

    const { supervisor: healthy } = supervisor(3);
    await healthy.start();
    await healthy.stop();
    assert.equal(healthy.listening, 0);
    rmSync(dir, { recursive: true, force: true });
  });
});
