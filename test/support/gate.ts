import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { spawnDaemon, waitUntilListening, type DaemonProcess } from './daemonProcess.js';
import { freePort, waitFor } from './ports.js';
import type { Scope } from './scope.js';

export const BIN = new URL('../../bin/matrix-regservice', import.meta.url).pathname;

/** One deployment of the service, made as an operator makes it: genconfig, then ./run.sh. */
export interface Gate {
  readonly dir: string;
  /** http://127.0.0.1:<port>/regapp/1 */
  readonly url: string;
  readonly registrationFile: string;
  readonly registration: Readonly<Record<string, unknown>>;
  readonly genconfigOutput: string;
  /** ./run.sh with `extraArgs`, and `env` added to the environment. */
  start(extraArgs?: readonly string[], env?: NodeJS.ProcessEnv): Promise<DaemonProcess>;
  /** SIGTERM (or `signal`); resolves to the exit code, null when a signal killed it. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** The running daemon process, if any. */
  process(): DaemonProcess | undefined;
  /** Everything every run of the daemon has printed so far. */
  output(): string;
  /** Waits until the daemon's output after position `since` (see mark) matches. */
  waitForLog(pattern: RegExp, timeoutMs?: number, since?: number): Promise<string>;
  /** The current end of the output, for waitForLog to look only at what comes after. */
  mark(): number;
}

/** Makes the deployment; `scope` stops whatever daemon it runs when the test or suite ends. */
export async function generateGate(
  scope: Scope,
  options: {
    serverName: string;
    homeserverUrl: string;
    genconfigArgs?: readonly string[];
    /** Chosen beforehand when other files must name it (an nginx upstream). */
    port?: number;
    /** The matrix-regservice command genconfig is run as (default this checkout's bin/): run.sh names its install. */
    bin?: string;
  },
): Promise<Gate> {
  const dir = mkdtempSync(join(tmpdir(), 'regservice-gate-'));
  const port = options.port ?? (await freePort());
  const { stdout } = await promisify(execFile)(
    options.bin ?? BIN,
    [
      'genconfig',
      '--matrixdomain',
      options.serverName,
      '--matrixurl',
      options.homeserverUrl,
      '--port',
      String(port),
      ...(options.genconfigArgs ?? []),
    ],
    { cwd: dir },
  );
  const registrationFile = join(dir, 'registration.yaml');
  const registration = parse(readFileSync(registrationFile, 'utf8')) as Record<string, unknown>;
  return gateRunning(scope, dir, port, [], { registrationFile, registration, genconfigOutput: stdout });
}

/**
 * A second gate of the same deployment on another port, as an operator runs one on a second machine: the same
 * run.sh (same registration, same --database), with --port given to it.
 */
export function sameDeploymentGate(scope: Scope, gate: Gate, port: number): Gate {
  const { registrationFile, registration, genconfigOutput } = gate;
  return gateRunning(scope, gate.dir, port, ['--port', String(port)], { registrationFile, registration, genconfigOutput });
}

function gateRunning(
  scope: Scope,
  dir: string,
  port: number,
  baseArgs: readonly string[],
  made: Pick<Gate, 'registrationFile' | 'registration' | 'genconfigOutput'>,
): Gate {
  const url = `http://127.0.0.1:${port}/regapp/1`;
  const finished: string[] = [];
  let current: DaemonProcess | undefined;
  const output = (): string => finished.join('') + (current?.output() ?? '');
  return {
    dir,
    url,
    ...made,
    async start(extraArgs = [], env = {}) {
      const since = output().length;
      current = spawnDaemon(scope, join(dir, 'run.sh'), [...baseArgs, '--verbosity', '5', ...extraArgs], { cwd: dir, env });
      await waitUntilListening(current, url);
      // The primary answers as soon as it listens; this line comes once every worker listens too.
      const started = current;
      await waitFor(
        'every process listening',
        async () => /matrix-regservice listening/.test(output().slice(since)) || undefined,
        20_000,
        () => (started.child.exitCode !== null ? `daemon exited with ${started.child.exitCode}:\n${started.output()}` : undefined),
      );
      return current;
    },
    process: () => current,
    async stop(signal = 'SIGTERM') {
      if (current === undefined) return null;
      const code = await current.stop(signal);
      finished.push(current.output());
      current = undefined;
      return code;
    },
    output,
    mark: () => output().length,
    // The caller's pattern may be global: a copy without that flag keeps its lastIndex out of it (matchAll starts there).
    waitForLog: (pattern, timeoutMs = 30_000, since = 0) => {
      const once = new RegExp(pattern.source, pattern.flags.replace('g', ''));
      return waitFor(`a log line matching ${pattern}`, async () => once.exec(output().slice(since))?.[0], timeoutMs);
    },
  };
}
