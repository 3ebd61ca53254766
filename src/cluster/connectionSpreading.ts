import { performance } from 'node:perf_hooks';
import type { Logger } from '../log/logger.js';

/** How often, at most, the primary looks at its own event loop (when it refuses a request). */
export const SAMPLE_MS = 250;
/** A worker reports its load every second: one not heard from for longer (stopped, stuck) says nothing of it now. */
export const REPORT_FRESH_MS = 1500;
/** The primary's event loop busy this share of the time since its last sample or more: it holds requests back. */
export const PRIMARY_SATURATED = 0.9;
/** A worker busy this share of its last second or less has a core to spare. */
export const WORKER_SPARE = 0.5;

/**
 * Whether the primary should pass its refused clients' connections on: its own event loop saturated (`primary`, the
 * busy share since its last sample) while a worker has time to spare (`workers`, each one's busy share of its last second).
 */
export function spreadingWanted(primary: number, workers: readonly number[]): boolean {
  return primary >= PRIMARY_SATURATED && workers.some((load) => load <= WORKER_SPARE);
}

/** What a process reads of itself: its event loop's busy share since the last call, and the time in ms. */
export interface LoadSource {
  readonly load: () => number;
  readonly now: () => number;
}

/** This process's own event loop, by Node's event-loop utilisation. */
export function eventLoopLoad(): LoadSource {
  let last = performance.eventLoopUtilization();
  return {
    load: () => {
      const now = performance.eventLoopUtilization();
      const busy = performance.eventLoopUtilization(now, last).utilization;
      last = now;
      return busy;
    },
    now: () => performance.now(),
  };
}

/**
 * Spreads a flood's connections that landed on the primary. Left to the kernel, an idle primary accepts about nine
 * connections in ten, and keep-alive keeps them there: a flood of forged requests that opens its connections after a
 * quiet spell is then refused by the primary alone while the workers idle. While the primary is saturated and a worker
 * has time to spare, a request the primary refuses before the registration is decided (a bad body or signature, a
 * client past its rate limit) is answered with Connection: close (`closesNow`): the client's next connection is accepted
 * by whichever process waits in accept, which the busy primary seldom is. Only those refusals: a registration served
 * in the primary costs less than one a worker hands over (it crosses no IPC channel).
 */
export class ConnectionSpreading {
  private readonly workers = new Map<number, { readonly load: number; readonly at: number }>();
  private running = false;
  private sampledAt = 0;
  private spreading = false;

  constructor(
    private readonly log: Logger,
    private readonly primary: LoadSource = eventLoopLoad(),
  ) {}

  /**
   * Whether a refusal's answer closes its connection now. Asked at each refusal, it samples the primary's load at most
   * every SAMPLE_MS (and logs when the answer turns); there is no timer, so that it never wakes an idle primary.
   */
  closesNow(): boolean {
    if (!this.running) return false;
    const now = this.primary.now();
    if (now - this.sampledAt >= SAMPLE_MS) this.sample(now);
    return this.spreading;
  }

  /** The share of its last second that `worker`'s event loop was busy (1 while it takes no connection). */
  workerLoad(load: number, worker: number): void {
    this.workers.set(worker, { load, at: this.primary.now() });
  }

  workerGone(worker: number): void {
    this.workers.delete(worker);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.primary.load();
    this.sampledAt = this.primary.now();
  }

  stop(): void {
    this.running = false;
    this.spreading = false;
  }

  private sample(now: number): void {
    this.sampledAt = now;
    const primary = this.primary.load();
    for (const [worker, report] of this.workers) if (report.at < now - REPORT_FRESH_MS) this.workers.delete(worker);
    const workers = [...this.workers.values()].map((report) => report.load);
    const wanted = spreadingWanted(primary, workers);
    if (wanted === this.spreading) return;
    this.spreading = wanted;
    const loads = { primary: primary.toFixed(2), workers: workers.map((load) => load.toFixed(2)).join(',') };
    this.log.debug(wanted ? "passing refused clients' connections on to the workers" : 'keeping connections again', loads);
  }
}
