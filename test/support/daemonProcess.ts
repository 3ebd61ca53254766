import { spawn, type ChildProcess } from 'node:child_process';
import { waitFor } from './ports.js';
import type { Scope } from './scope.js';

/** Daemons still running: killed when the test process exits, whatever ended it (the after hooks come first). */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** The daemon as an operator runs it: a real process, its output kept for assertions. */
export interface DaemonProcess {
  readonly child: ChildProcess;
  output(): string;
  /** SIGTERM, then the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited(): Promise<number | null>;
}

/** Starts the daemon; `scope` stops it (SIGTERM, then SIGKILL after 10 s) when the test or suite ends. */
export function spawnDaemon(
  scope: Scope,
  command: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): DaemonProcess {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exit = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      running.delete(child);
      resolve(code);
    }),
  );
  scope.after(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exit;
    clearTimeout(killer);
  });
  return {
    child,
    output: () => output,
    exited: () => exit,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exit;
    },
  };
}

/** Waits until the daemon answers on `baseUrl` (e.g. http://127.0.0.1:8009/regapp/1). */
export async function waitUntilListening(daemon: DaemonProcess, baseUrl: string): Promise<void> {
  await waitFor(
    `the daemon at ${baseUrl}`,
    async () => {
      const response = await fetch(`${baseUrl}/register`);
      return response.status === 405 ? true : undefined;
    },
    20_000,
    () => (daemon.child.exitCode !== null ? `daemon exited with ${daemon.child.exitCode}:\n${daemon.output()}` : undefined),
  );
}
