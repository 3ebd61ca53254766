import cluster, { type Worker } from 'node:cluster';
import type { Server } from 'node:net';
import type { Settings } from '../config/settings.js';
import type { Logger } from '../log/logger.js';
import type { MetricsSnapshot } from '../metrics/metrics.js';
import { IpcPeer, type Channel, type Handlers } from './ipc.js';
import { sendListener } from './listenerHandle.js';
import { workerExecArgv } from './nodeFlags.js';
import type { RequestServers, ServersMetrics } from './requestServers.js';
import { WORKER_ENVIRONMENT, workerSettingsOf } from './workerSettings.js';

/** Replacements that fail to start one after another before the service gives up (a crash loop). */
export const MAX_FAILED_STARTS = 3;

export class StartError extends Error {}

/** How long a worker's exit waits for its channel to close (its last messages read) before it is judged. */
const EXIT_JUDGED_AFTER_MS = 1000;

/** How long a worker may take from its fork to listening: one that does not is ended, and its start counts as failed. */
export const WORKER_START_TIMEOUT_MS = 30_000;

export interface SupervisorOptions {
  readonly count: number;
  /** The worker's entry module. */
  readonly exec: string;
  /** What each worker is started with. */
  readonly settings: Settings;
  /** The primary's listening socket: every worker accepts from it, beside the primary. */
  readonly listener: Server;
  /** The primary's answers to the calls of the worker with this id (node:cluster's). */
  readonly handlers: (worker: number) => Handlers;
  readonly log: Logger;
  /** Workers keep failing at start: the service cannot run. */
  readonly onCrashLoop: (reason: string) => void;
  /** How long workers get to finish requests in flight when stopping, before they are killed. */
  readonly stopTimeoutMs: number;
  /** A worker exited (its cluster id): whatever it was doing for clients ended with it. */
  readonly onWorkerExit?: (id: number) => void;
  /** Environment variables workers get besides WORKER_ENVIRONMENT (tests' fixtures). */
  readonly environment?: readonly string[];
  /** WORKER_START_TIMEOUT_MS unless given (tests). */
  readonly startTimeoutMs?: number;
}

interface Managed {
  readonly worker: Worker;
  /** Its place among the workers, 0..count-1, which its replacement takes over: a label that never grows. */
  readonly slot: number;
  readonly peer: IpcPeer;
  listening: boolean;
  /** Each method's last answer, for collect's lastIfLate. */
  readonly lastAnswers: Map<string, unknown>;
  /** Why it could not start: as the worker said, or that it did not listen in time. */
  failure?: string;
  /** Ended for not listening in time: a `listening` it sent meanwhile no longer counts. */
  timedOut?: boolean;
}

/**
 * The environment a worker is forked with: the names allowed, each as the primary has it, and nothing else. node:cluster
 * starts from the primary's whole environment and adds these; a name set to undefined is left out of the child's.
 */
function workerEnvironment(allowed: readonly string[]): Record<string, string | undefined> {
  const keep = new Set(allowed);
  return Object.fromEntries(Object.keys(process.env).map((name) => [name, keep.has(name) ? process.env[name] : undefined]));
}

/** The primary's end of one worker's channel. */
export function workerChannel(worker: Worker): Channel {
  return {
    send: (packet, done) => {
      worker.send(packet, undefined, done);
    },
    onMessage: (listener) => worker.on('message', listener),
  };
}

const describeExit = (code: number | null, signal: string | null): string => (signal === null ? `code ${code}` : `signal ${signal}`);

/**
 * Forks and keeps `count` workers: a worker that dies is replaced and logged; replacements failing to
 * start MAX_FAILED_STARTS times in a row stop the service. Workers get only what they need of the
 * settings: no shared secret, admin token or as_token.
 */
export class Supervisor implements RequestServers {
  private readonly managed = new Set<Managed>();
  /** The last answers of workers that exited, by method (collect's lastIfLate): what they counted stays counted. */
  private readonly retiredAnswers = new Map<string, unknown[]>();
  private replaced = 0;
  private failedStarts = 0;
  private stopping = false;
  private allExited: (() => void) | undefined;
  /** Set while the first workers are starting. */
  private startup: { listening(): void; failed(reason: string): void } | undefined;

  constructor(private readonly options: SupervisorOptions) {
    cluster.setupPrimary({ exec: options.exec, args: [], serialization: 'json', execArgv: workerExecArgv(process.execArgv) });
  }

  /** Forks every worker; resolves once all listen, rejects with the reason when one cannot start. */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      let waiting = this.options.count;
      this.startup = {
        listening: () => {
          waiting -= 1;
          if (waiting > 0) return;
          this.startup = undefined;
          resolve();
        },
        failed: (reason) => {
          this.startup = undefined;
          reject(new StartError(reason));
        },
      };
      for (let slot = 0; slot < this.options.count; slot++) this.fork(slot);
    });
  }

  /**
   * Asks every listening worker `method`, waiting `timeoutMs` at most for each: a worker that does not answer in time
   * (stopped, its channel wedged) must not hang a scrape or a health check. With `lastIfLate`, such a worker's last
   * answer stands in for it (its counters must not seem to go back, which Prometheus would read as a reset); without,
   * it is left out.
   */
  async collect<T>(method: string, timeoutMs: number, lastIfLate = false): Promise<T[]> {
    return (await this.collectBySlot<T>(method, timeoutMs, lastIfLate)).map((answer) => answer.value);
  }

  /** collect, with each answer's worker slot. */
  async collectBySlot<T>(method: string, timeoutMs: number, lastIfLate = false): Promise<{ slot: number; value: T }[]> {
    const answers = await Promise.all(
      [...this.managed]
        .filter((m) => m.listening)
        .map(async (m): Promise<{ slot: number; value: T } | undefined> => {
          try {
            const value = await m.peer.request<T>(method, [], timeoutMs);
            if (lastIfLate) m.lastAnswers.set(method, value);
            return { slot: m.slot, value };
          } catch {
            return lastIfLate && m.lastAnswers.has(method) ? { slot: m.slot, value: m.lastAnswers.get(method) as T } : undefined;
          }
        }),
    );
    return answers.filter((answer) => answer !== undefined).sort((a, b) => a.slot - b.slot);
  }

  /**
   * collectBySlot's answers of the workers still running, and the last answers of those that exited, taken in one
   * step after the last wait: a worker that exits meanwhile is in one or the other, never in both (its counts would
   * be summed twice, then once, which Prometheus reads as a reset) and never in neither.
   */
  async collectWithRetired<T>(method: string, timeoutMs: number): Promise<{ live: { slot: number; value: T }[]; retired: T[] }> {
    const running = new Map([...this.managed].map((m) => [m.slot, m]));
    const answers = await this.collectBySlot<T>(method, timeoutMs, true);
    const live = answers.filter((answer) => {
      const managed = running.get(answer.slot);
      return managed !== undefined && this.managed.has(managed);
    });
    return { live, retired: this.takeRetired<T>(method) };
  }

  /**
   * The last answers to `method` (collected with lastIfLate) of the workers that exited since the last call: the caller
   * folds them into what it keeps. Each is handed out once.
   */
  takeRetired<T>(method: string): T[] {
    const retired = (this.retiredAnswers.get(method) ?? []) as T[];
    this.retiredAnswers.delete(method);
    return retired;
  }

  /** Workers that answer, within `timeoutMs`, that they take connections. */
  async serving(timeoutMs: number): Promise<number> {
    return (await this.collect<boolean>('serving', timeoutMs)).filter((answer) => answer).length;
  }

  metrics(timeoutMs: number): Promise<ServersMetrics> {
    return this.collectWithRetired<MetricsSnapshot>('metrics', timeoutMs);
  }

  /** Workers started in place of one that exited. */
  get replacements(): number {
    return this.replaced;
  }

  /** The workers there should be (a replacement counts from its fork on). */
  get count(): number {
    return this.options.count;
  }

  get listening(): number {
    return [...this.managed].filter((m) => m.listening).length;
  }

  /** Tells every worker to stop (they finish requests in flight); kills those still there after the timeout. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.managed.size === 0) return;
    const exited = new Promise<void>((resolve) => (this.allExited = resolve));
    for (const { peer } of this.managed) peer.notify('stop', []);
    const kill = setTimeout(() => {
      for (const { worker } of this.managed) worker.process.kill('SIGKILL');
    }, this.options.stopTimeoutMs);
    await exited;
    clearTimeout(kill);
  }

  private fork(slot: number): void {
    const { settings, log } = this.options;
    const worker = cluster.fork(workerEnvironment([...WORKER_ENVIRONMENT, ...(this.options.environment ?? [])]));
    const forWorker = workerSettingsOf(settings);
    // A worker that never listens (stuck loading, or never given the socket) would hold the start, or a slot, for ever.
    const startTimeoutMs = this.options.startTimeoutMs ?? WORKER_START_TIMEOUT_MS;
    const startTimer = setTimeout(() => {
      if (managed.listening) return;
      managed.timedOut = true;
      managed.failure ??= `worker ${worker.id} did not listen within ${startTimeoutMs / 1000} s`;
      worker.process.kill('SIGKILL');
    }, startTimeoutMs);
    startTimer.unref();
    const managed: Managed = {
      worker,
      slot,
      listening: false,
      lastAnswers: new Map(),
      peer: new IpcPeer(
        workerChannel(worker),
        {
          ...this.options.handlers(worker.id),
          hello: () => {
            managed.peer.notify('start', [forWorker]);
            sendListener(worker, this.options.listener, (error) => {
              if (error === null) return;
              managed.failure = `cannot hand the listening socket to worker ${worker.id}: ${error.message}`;
              managed.peer.close(managed.failure);
            });
          },
          listening: () => {
            clearTimeout(startTimer);
            if (managed.timedOut !== true) this.listened(managed);
          },
          failedToStart: (reason: string) => (managed.failure = reason),
        },
        (method, error) => log.error(`a worker's ${method} report failed`, { reason: (error as Error).message }),
        // A worker this primary cannot reach serves nobody: it is ended, and replaced as any worker that exits.
        () => {
          if (worker.process.exitCode === null && worker.process.signalCode === null) worker.process.kill('SIGKILL');
        },
      ),
    };
    this.managed.add(managed);
    // A send to a worker whose channel has just closed fails; the peer hears of it through its send callbacks, and
    // nothing Node emits here may go unheard (an 'error' without a listener would end the primary and every worker).
    worker.on('error', (error) => managed.peer.close(`worker ${worker.id}: ${error.message}`));
    // A worker's last messages (why it could not start) may still be in the channel when 'exit' comes: judge the
    // exit once the channel closed too, or after a second at most: Node never says 'disconnect' while a handle it sent
    // (the listening socket) waits for an acknowledgement the exited worker will not give.
    worker.on('exit', (code, signal) => {
      clearTimeout(startTimer);
      if (!worker.isConnected()) {
        this.exited(managed, code, signal);
        return;
      }
      const judge = (): void => {
        clearTimeout(timer);
        worker.off('disconnect', judge);
        this.exited(managed, code, signal);
      };
      const timer = setTimeout(judge, EXIT_JUDGED_AFTER_MS);
      worker.once('disconnect', judge);
    });
  }

  private listened(managed: Managed): void {
    if (managed.listening) return;
    managed.listening = true;
    this.failedStarts = 0;
    this.options.log.debug('worker listening', { worker: managed.worker.id, pid: managed.worker.process.pid });
    this.startup?.listening();
  }

  private exited(managed: Managed, code: number | null, signal: string | null): void {
    const { worker } = managed;
    const { log } = this.options;
    this.managed.delete(managed);
    for (const [method, answer] of managed.lastAnswers)
      this.retiredAnswers.set(method, [...(this.retiredAnswers.get(method) ?? []), answer]);
    managed.lastAnswers.clear();
    managed.peer.close(`worker ${worker.id} exited`);
    this.options.onWorkerExit?.(worker.id);
    if (this.stopping) {
      if (this.managed.size === 0) this.allExited?.();
      return;
    }
    const how = describeExit(code, signal);
    if (!managed.listening) {
      const reason = managed.failure ?? `a worker exited with ${how} before it listened`;
      if (this.startup !== undefined) {
        this.startup.failed(reason);
        return;
      }
      this.failedStarts += 1;
      if (this.failedStarts >= MAX_FAILED_STARTS) {
        this.options.onCrashLoop(`${this.failedStarts} workers in a row failed to start; the last: ${reason}`);
        return;
      }
      log.warn(`a replacement worker failed to start (${reason}); trying again`);
    } else {
      log.warn(`worker ${worker.id} (pid ${worker.process.pid}) exited with ${how}; starting a replacement`);
    }
    this.replaced += 1;
    this.fork(managed.slot);
  }
}
