/**
 * `npm test`: every test file in a `node --test` run of its own, bounded by a limit that fits its cold worst case (a new
 * machine just after test/provision.sh), its duration printed against that limit, and the totals at the end.
 *
 * Why not one `node --test` over every file: Node 20 and 22 apply `--test-timeout` to each file as a whole and Node 24
 * to each test, so one flag cannot give the long end-to-end files room without giving every test that room too. Here a
 * file's limit is this table's and is enforced by this runner on every Node (the file's process group is ended at it),
 * while each test's own timeout comes from test/support/timedTests.ts.
 *
 * Usage: node --import tsx test/run.ts [FILE...]   (default: test/unit/*.test.ts, then test/e2e/*.test.ts)
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { signalIfAlive } from './support/processTree.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Seconds a test file may take, measured on a new machine (CI's, after test/provision.sh), with room for a busy one. */
const DEFAULT_LIMIT_S: Readonly<Record<string, number>> = { 'test/unit': 120, 'test/e2e': 300 };
const LIMIT_S: Readonly<Record<string, number>> = {
  // Builds the service's image (npm ci and tsc inside a container), then runs the compose deployment.
  'test/e2e/containers.test.ts': 900,
  // The fuzzer runs for FUZZ_SECONDS (test/fuzz/runProperty.ts; `npm run fuzz` sets more), then shrinks what failed.
  'test/e2e/fuzz.test.ts': 240 + Number(process.env.FUZZ_SECONDS ?? 60),
};
/** Past this share of its limit a file is named in the closing table, before it outgrows its limit on a slower machine. */
const NEAR_LIMIT = 0.6;
/**
 * This long after its limit, the file's processes get SIGTERM, and SIGKILL as long again later. The wait lets Node 20
 * and 22, which end the file at its limit themselves (`--test-timeout`), report which test it was in.
 */
const KILL_GRACE_MS = 5_000;

const NODE_ARGS = [
  '--import',
  'tsx',
  '--import',
  join(ROOT, 'test/support/blockingReports.mjs'),
  '--test',
  '--test-concurrency=1',
  '--test-force-exit',
  '--test-reporter=spec',
  '--test-reporter-destination=stdout',
];
/** The spec reporter's closing counts, at the start of a line (a test's own diagnostics are indented). */
const COUNT_LINE = /^ℹ (tests|pass|fail|cancelled|skipped|todo) (\d+)$/gm;

type Counts = Partial<Record<'tests' | 'pass' | 'fail' | 'cancelled' | 'skipped' | 'todo', number>>;

/** The closing counts in a file's output. A reporter of our own cannot give them: Node 20 exits (--test-force-exit) before it ends. */
function countsIn(output: string): Counts | undefined {
  const counts: Record<string, number> = {};
  for (const [, name, value] of output.matchAll(COUNT_LINE)) counts[name as string] = Number(value);
  return counts.tests === undefined ? undefined : counts;
}

/** Lines and characters of a file's failures repeated in the closing summary: CI shows the end of the output. */
const FAILURE_LINES = 40;
const FAILURE_LINE_CHARS = 300;

/** The spec reporter's "failing tests" section of a file's output, without Node's own stack frames, each line cut short. */
function failuresIn(output: string): string {
  const start = output.lastIndexOf('failing tests:');
  if (start === -1) return '';
  const lines = output
    .slice(start)
    .split('\n')
    .slice(1)
    .filter((text) => text.trim() !== '' && !/^\s*at .*node:[a-z_]/.test(text))
    .map((text) => (text.length > FAILURE_LINE_CHARS ? `${text.slice(0, FAILURE_LINE_CHARS)}…` : text));
  return lines.slice(0, FAILURE_LINES).join('\n') + (lines.length > FAILURE_LINES ? `\n… ${lines.length - FAILURE_LINES} more lines` : '');
}

interface FileResult {
  readonly file: string;
  readonly seconds: number;
  readonly limitS: number;
  readonly passed: number;
  readonly failed: number;
  readonly skipped: number;
  /** The reporter's account of its failures (its "failing tests" section), shortened for the closing summary. */
  readonly failures: string;
  /** Why the file counts as failed beyond its tests: it outgrew its limit, or its process ended without its counts. */
  readonly problem?: string;
}

function limitFor(file: string): number {
  const own = LIMIT_S[file];
  if (own !== undefined) return own;
  const folder = Object.keys(DEFAULT_LIMIT_S).find((prefix) => file.startsWith(`${prefix}/`));
  if (folder === undefined) throw new Error(`${file}: no limit for its folder (test/run.ts)`);
  return DEFAULT_LIMIT_S[folder] as number;
}

function defaultFiles(): string[] {
  return ['test/unit', 'test/e2e'].flatMap((folder) =>
    readdirSync(join(ROOT, folder))
      .filter((name) => name.endsWith('.test.ts'))
      .sort()
      .map((name) => `${folder}/${name}`),
  );
}

/** Signals process `pid`, or with `group` its whole process group; it may be gone already. */
const signal = (pid: number, name: NodeJS.Signals, group: boolean): void => signalIfAlive(group ? -pid : pid, name);
/** The file running now: ended with this runner. */
let running: number | undefined;

function runFile(file: string): Promise<FileResult> {
  const limitS = limitFor(file);
  const started = performance.now();
  // A process group of its own: at the limit, the file's test process and whatever it started end together.
  const child = spawn(process.execPath, [...NODE_ARGS, `--test-timeout=${limitS * 1000}`, file], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
    detached: true,
  });
  let output = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    process.stdout.write(chunk);
    output += chunk;
  });
  const pid = child.pid as number;
  running = pid;
  // SIGTERM to the file's runner alone first: it reports the tests still running as cancelled (which test hung),
  // then SIGKILL to the whole group.
  let killLater: NodeJS.Timeout | undefined;
  const kill = setTimeout(
    () => {
      signal(pid, 'SIGTERM', false);
      killLater = setTimeout(() => signal(pid, 'SIGKILL', true), KILL_GRACE_MS);
    },
    limitS * 1000 + KILL_GRACE_MS,
  );
  return new Promise((resolve) => {
    child.once('close', (code, exitSignal) => {
      clearTimeout(kill);
      clearTimeout(killLater);
      signal(pid, 'SIGKILL', true); // anything the file left behind in its group
      running = undefined;
      const seconds = (performance.now() - started) / 1000;
      const counts = countsIn(output);
      const failed = (counts?.fail ?? 0) + (counts?.cancelled ?? 0);
      const problem =
        seconds >= limitS
          ? `outgrew its limit of ${limitS} s`
          : counts?.tests === undefined
            ? `its process ended without its counts (${exitSignal ?? `exit ${code}`})`
            : code !== 0 && failed === 0
              ? `its process exited ${code ?? exitSignal} with no failed test`
              : undefined;
      resolve({
        file,
        seconds,
        limitS,
        passed: counts?.pass ?? 0,
        // A file that outgrew its limit or died counts as one failure, unless a test of it already says so.
        failed: failed + (problem !== undefined && failed === 0 ? 1 : 0),
        skipped: (counts?.skipped ?? 0) + (counts?.todo ?? 0),
        failures: failuresIn(output),
        ...(problem === undefined ? {} : { problem }),
      });
    });
  });
}

const line = (result: FileResult): string =>
  `${result.file}: ${result.seconds.toFixed(1)} s of its ${result.limitS} s limit, ${result.passed} passed, ${result.failed} failed` +
  (result.skipped > 0 ? `, ${result.skipped} skipped` : '') +
  (result.problem === undefined ? '' : ` (${result.problem})`);

async function main(): Promise<number> {
  const files = process.argv.length > 2 ? process.argv.slice(2).map((file) => relative(ROOT, resolve(file))) : defaultFiles();
  for (const file of files) limitFor(file);
  for (const [name, status] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.on(name, () => {
      if (running !== undefined) signal(running, 'SIGKILL', true);
      process.exit(status);
    });
  }
  const results: FileResult[] = [];
  const started = performance.now();
  for (const file of files) {
    console.log(`\n# ${file} (limit ${limitFor(file)} s)`);
    const result = await runFile(file);
    results.push(result);
    console.log(`# ${line(result)}`);
  }
  const total = (pick: (result: FileResult) => number): number => results.reduce((sum, result) => sum + pick(result), 0);
  console.log(`\n# ${files.length} test files in ${((performance.now() - started) / 1000).toFixed(0)} s on Node ${process.version}`);
  const near = results.filter((result) => result.seconds > NEAR_LIMIT * result.limitS);
  for (const result of near) console.log(`# near its limit (over ${NEAR_LIMIT * 100}%): ${line(result)}`);
  for (const result of results.filter((result) => result.failed > 0)) {
    console.log(`# failed: ${line(result)}`);
    if (result.failures !== '') console.log(result.failures.replace(/^/gm, '#   '));
  }
  console.log(
    `tests: ${total((result) => result.passed)} passed, ${total((result) => result.failed)} failed, ${total((result) => result.skipped)} skipped`,
  );
  return total((result) => result.failed) === 0 ? 0 : 1;
}

process.exitCode = await main();
