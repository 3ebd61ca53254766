import { strict as assert } from 'node:assert';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { after, before, describe, it } from '../support/timedTests.js';
import { tempDir } from '../support/tempDir.js';
import { MAX_FAILED_STARTS, StartError, Supervisor } from '../../src/cluster/supervisor.js';
import { PRIMARY_NODE_FLAGS, workerExecArgv } from '../../src/cluster/nodeFlags.js';
import { WORKER_ENVIRONMENT, workerSettingsOf } from '../../src/cluster/workerSettings.js';
import { resolveSettings } from '../../src/config/settings.js';
import { capturingLogger } from '../support/capturingLogger.js';
import { waitFor } from '../support/ports.js';

const FIXTURE = new URL('../support/fixtureWorker.mjs', import.meta.url).pathname;
const EXITING_FIXTURE = new URL('../support/exitingWorker.mjs', import.meta.url).pathname;
const settings = resolveSettings([
  { source: 'test', values: { matrixdomain: 'hs', sharesecret: 's', astoken: 'a', hstoken: 'h' } },
]).settings;

/** The primary's listening socket, which the workers accept from. */
const listener = createServer();

function supervisor(count: number, onCrashLoop: (reason: string) => void = () => {}, exec = FIXTURE, startTimeoutMs?: number) {
  const logger = capturingLogger();
  const workers = new Supervisor({
    count,
    exec,
    settings,
    listener,
    handlers: () => ({}),
    log: logger.log,
    onCrashLoop,
    stopTimeoutMs: 5000,
    environment: ['FIXTURE_FAIL_FILE', 'FIXTURE_CUT_FILE', 'FIXTURE_STUCK_FILE'],
    ...(startTimeoutMs === undefined ? {} : { startTimeoutMs }),
  });
  return { logger, supervisor: workers };
}

/** The pids of the first `count` workers the supervisor logged as listening, once it has logged that many. */
function listeningWorkers(lines: () => readonly string[], count: number): Promise<number[]> {
  return waitFor(
    `${count} worker pids`,
    async () => {
      const pids = lines()
        .filter((line) => /worker listening/.test(line))
        .map((line) => Number(/pid=(\d+)/.exec(line)?.[1]));
      return pids.length === count ? pids : undefined;
    },
    5000,
  );
}

describe('Supervisor with real worker processes (node:cluster)', () => {
  const dir = tempDir('regservice-supervisor-');
  const failFile = join(dir, 'fail');
  process.env.FIXTURE_FAIL_FILE = failFile;
  const cutFile = join(dir, 'cut');
  process.env.FIXTURE_CUT_FILE = cutFile;
  const stuckFile = join(dir, 'stuck');
  process.env.FIXTURE_STUCK_FILE = stuckFile;
  const running: Supervisor[] = [];
  before(() => new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve)));
  after(async () => {
    for (const workers of running) await workers.stop();
    listener.close();
  });
  const started = (made: ReturnType<typeof supervisor>): ReturnType<typeof supervisor> => {
    running.push(made.supervisor);
    return made;
  };

  it('replaces a worker that dies, and stops the service when replacements keep failing to start', async () => {
    let crashLoop: string | undefined;
    const { supervisor: workers, logger } = started(supervisor(2, (reason) => (crashLoop = reason)));
    await workers.start();
    assert.equal(workers.listening, 2);

    const pids = await listeningWorkers(logger.lines, 2);
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

  it('ends a worker it cannot reach (its channel closed, the process alive) and replaces it', async () => {
    writeFileSync(cutFile, '');
    const { supervisor: workers, logger } = started(supervisor(1));
    await workers.start();
    const [pid] = await listeningWorkers(logger.lines, 1);
    rmSync(cutFile);
    // Asking it anything fails once its channel is closed: the primary then ends it.
    await waitFor(
      'the unreachable worker ended',
      async () => {
        await workers.collect('metrics', 500);
        try {
          process.kill(pid!, 0);
          return undefined;
        } catch {
          return true;
        }
      },
      10_000,
    );
    await listeningWorkers(logger.lines, 2);
    assert.equal(workers.listening, 1, 'a replacement listens');
    await workers.stop();
  });

  it('fails the start with the reason a worker gave, and stop() ends every worker', async () => {
    writeFileSync(failFile, '');
    const { supervisor: failing } = started(supervisor(2));
    await assert.rejects(
      failing.start(),
      (error: unknown) => error instanceof StartError && error.message === 'the fixture was told to fail',
    );
    await failing.stop();
    rmSync(failFile);

    const { supervisor: healthy } = started(supervisor(3));
    await healthy.start();
    await healthy.stop();
    assert.equal(healthy.listening, 0);
  });

  it('fails the start when a worker does not listen in time, and counts stuck replacements as a crash loop', async () => {
    writeFileSync(stuckFile, '');
    try {
      let crashLoop: string | undefined;
      const { supervisor: stuck } = started(supervisor(2, (reason) => (crashLoop = reason), FIXTURE, 1000));
      await assert.rejects(
        stuck.start(),
        (error: unknown) => error instanceof StartError && /^worker \d+ did not listen within 1 s$/.test(error.message),
      );
      // The other first worker, then each replacement, is ended a second after its start, until the crash loop.
      const reason = await waitFor('the crash loop', async () => crashLoop, 15_000);
      assert.match(
        reason,
        new RegExp(`^${MAX_FAILED_STARTS} workers in a row failed to start; the last: worker \\d+ did not listen within 1 s$`),
      );
      await stuck.stop();
    } finally {
      rmSync(stuckFile, { force: true });
    }
  });

  it('survives workers that exit while its answers are on their way to them, and says why the start failed', async () => {
    // Each worker says hello and exits at once: the primary's answer (start) meets a channel that just closed.
    for (let round = 0; round < 5; round++) {
      const { supervisor: workers } = started(supervisor(4, () => {}, EXITING_FIXTURE));
      await assert.rejects(workers.start(), (error: unknown) => error instanceof StartError && /before it listened/.test(error.message));
      await workers.stop();
    }
  });

  it("starts workers with an allow-listed environment: none of the primary's secrets, whatever their name", async () => {
    const planted = {
      MATRIX_REGSERVICE_SHARESECRET: 'planted-shared-secret',
      PGPASSWORD: 'planted-database-password',
      MATRIX_REGSERVICE_CONFIG: '/etc/regservice/secret-config.yaml',
      SOME_OPERATOR_TOKEN: 'planted-operator-token',
    };
    Object.assign(process.env, planted);
    try {
      const { supervisor: workers, logger } = started(supervisor(2));
      await workers.start();
      const pids = await listeningWorkers(logger.lines, 2);
      for (const pid of pids) {
        const environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
        const names = environ
          .split('\0')
          .filter(Boolean)
          .map((entry) => entry.split('=')[0]);
        for (const value of Object.values(planted)) assert.ok(!environ.includes(value), `${value} reached worker ${pid}`);
        // Node adds the cluster's and the IPC channel's own.
        const allowed = new Set([
          ...WORKER_ENVIRONMENT,
          'FIXTURE_FAIL_FILE',
          'FIXTURE_CUT_FILE',
          'FIXTURE_STUCK_FILE',
          'NODE_UNIQUE_ID',
          'NODE_CHANNEL_FD',
          'NODE_CHANNEL_SERIALIZATION_MODE',
        ]);
        assert.deepEqual(
          names.filter((name) => !allowed.has(name ?? '')),
          [],
          'only allowed names',
        );
        assert.ok(names.includes('NODE_UNIQUE_ID') && names.includes('FIXTURE_FAIL_FILE'));
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        for (const value of Object.values(planted)) assert.ok(!cmdline.includes(value));
      }
      await workers.stop();
    } finally {
      for (const name of Object.keys(planted)) delete process.env[name];
    }
  });
});

describe("the processes' Node flags", () => {
  it("are the primary's for workers but the primary-only ones and those the workers set themselves", () => {
    assert.deepEqual(
      workerExecArgv(['--max-semi-space-size=4', '--optimize-for-size', '--v8-pool-size=1', '--enable-source-maps', ...PRIMARY_NODE_FLAGS]),
      ['--enable-source-maps', '--max-semi-space-size=2', '--heap-growing-percent=10'],
    );
  });

  it('are the same in run.sh and in the container image', () => {
    const dockerfile = readFileSync(new URL('../../Dockerfile', import.meta.url), 'utf8');
    const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)?.[1];
    assert.deepEqual(JSON.parse(entrypoint ?? '[]'), ['node', ...PRIMARY_NODE_FLAGS, '/app/bin/matrix-regservice']);
    const template = readFileSync(new URL('../../run.sh.template', import.meta.url), 'utf8');
    assert.match(template, /^exec \{\{NODE\}\} \{\{NODE_FLAGS\}\} \{\{BIN\}\}/m);
  });
});

describe("workers' settings", () => {
  it('collect the Node.js process metrics only when the service serves /metrics', () => {
    assert.equal(workerSettingsOf(settings).processMetrics, false);
    const served = resolveSettings([
      { source: 'test', values: { matrixdomain: 'hs', sharesecret: 's', astoken: 'a', hstoken: 'h', 'metrics-port': 9009 } },
    ]).settings;
    assert.equal(workerSettingsOf(served).processMetrics, true);
  });
});
