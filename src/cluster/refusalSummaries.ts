import { UNNAMED_CLIENTS_WARNING, untrustedForwarderWarning } from '../http/clientKey.js';
import type { Logger } from '../log/logger.js';
import { RefusalTally, refusalSummaryFields } from '../log/refusalTally.js';

/** Runs `tick` every `ms` until the returned function is called; a test passes a clock it controls. */
export type Every = (ms: number, tick: () => void) => () => void;

const everyInterval: Every = (ms, tick) => {
  const timer = setInterval(tick, ms);
  timer.unref();
  return () => clearInterval(timer);
};

/**
 * The primary's lines about refusals, once per interval: each service-wide ceiling of new accounts reached in the
 * interval (and until when it holds), the refused requests by outcome and client, and the requests that came through
 * a trusted proxy naming no client. An interval with none of these writes nothing.
 */
export class RefusalSummaries {
  /** The service's refusals of this interval: the primary's own, and the workers' reports merged in. */
  readonly tally: RefusalTally;
  private readonly ceilings = new Map<string, number>();
  private readonly cancel: () => void;

  constructor(
    private readonly log: Logger,
    private readonly intervalMs: number,
    linesPerSecond: number,
    every: Every = everyInterval,
  ) {
    this.tally = new RefusalTally(linesPerSecond);
    this.cancel = every(intervalMs, () => this.summarize());
  }

  /** A service-wide ceiling refused a new node; it holds until `until` (ms since the epoch). */
  ceilingReached(ceiling: string, until: number): void {
    this.ceilings.set(ceiling, until);
  }

  /** Writes this interval's lines and starts the next interval. */
  summarize(): void {
    for (const [ceiling, until] of this.ceilings) {
      this.log.warn(`the service-wide ceiling of new accounts is reached: every new node gets 429 until ${new Date(until).toISOString()}`, {
        ceiling,
      });
    }
    this.ceilings.clear();
    if (this.tally.empty) return;
    const report = this.tally.drain();
    if (Object.keys(report.outcomes).length > 0) this.log.info('refused requests', refusalSummaryFields(report, this.intervalMs));
    if (report.unnamedClients !== undefined)
      this.log.warn(UNNAMED_CLIENTS_WARNING, { requests: report.unnamedClients, interval_s: this.intervalMs / 1000 });
    for (const [peer, requests] of report.untrustedForwarders ?? []) {
      this.log.warn(untrustedForwarderWarning(peer), { requests, interval_s: this.intervalMs / 1000 });
    }
  }

  /** Writes what the last interval holds and stops. */
  stop(): void {
    this.cancel();
    this.summarize();
  }
}
