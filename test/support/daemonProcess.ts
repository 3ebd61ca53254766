import { spawn, type ChildProcess } from 'node:child_process';
import { waitFor } from './ports.js';
import type { Scope } from './scope.js';

/** Daemons still running: killed when the test process exits, whatever ended it (the after hooks come first). */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      child.kill('SIGKILL'); // not a group leader
    }
  }
});

/** The daemon as an operator runs it: a real process, its output kept for assertions. */
export interface DaemonProcess {
  readonly child: ChildProcess;
  output(): string;
  /** SIGTERM, then the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited(): Promise<number | null>;
}

/** Resolves once no process of the group is left (the shell went first; what it started follows). */
async function groupGone(pgid: number): Promise<void> {
  for (let waited = 0; waited < 15_000; waited += 50) {
    try {
      process.kill(-pgid, 0);
    } catch {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  process.kill(-pgid, 'SIGKILL');
}

/** Starts the daemon; `scope` stops it (SIGTERM, then SIGKILL after 10 s) when the test or suite ends. */
export function spawnDaemon(
  scope: Scope,
  command: string,
  args: readonly string[],
  /** group: a process group of its own, signalled whole (a run.sh that does not exec, as the Go original's). */
  options: { cwd?: string; env?: NodeJS.ProcessEnv; group?: boolean } = {},
): DaemonProcess {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.group === true,
  });
  const sendSignal = (name: NodeJS.Signals): void => {
    if (options.group === true && child.pid !== undefined) process.kill(-child.pid, name);
    else child.kill(name);
  };
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
    sendSignal('SIGTERM');
    const killer = setTimeout(() => sendSignal('SIGKILL'), 10_000);
    await exit;
    clearTimeout(killer);
  });
  return {
    child,
    output: () => output,
    exited: () => exit,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) sendSignal(signal);
      const code = await exit;
      if (options.group === true && child.pid !== undefined) await groupGone(child.pid);
      return code;
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
