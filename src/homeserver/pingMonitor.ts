import type { Logger } from '../log/logger.js';
import type { PingResult } from './appservicePing.js';

/** How often the service asks the homeserver to ping it while the last ping succeeded, and after a failure. */
export const PING_INTERVAL_MS = 5 * 60_000;
export const PING_RETRY_MS = 15_000;

export interface PingState {
  readonly result: PingResult;
  /** When the ping was answered (ms since the epoch). */
  readonly at: number;
}

export interface PingMonitor {
  /** The first ping's result, once logged. */
  readonly first: Promise<void>;
  last(): PingState | undefined;
  stop(): void;
}

/**
 * Pings through the homeserver at start, then every PING_INTERVAL_MS (PING_RETRY_MS after a failure), so that a
 * homeserver restarted later, or tokens changed on it, show: the log says when the result changes (never the same
 * line again), and the last result and its time are kept for the metrics.
 */
export function startPingMonitor(options: {
  readonly ping: () => Promise<PingResult>;
  readonly log: Logger;
  readonly now?: () => number;
  readonly onResult?: (state: PingState) => void;
}): PingMonitor {
  const now = options.now ?? Date.now;
  let last: PingState | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const report = (result: PingResult): void => {
    const before = last?.result;
    if (result.ok && before?.ok !== true) {
      options.log.info(`application-service ping succeeded${before === undefined ? '' : ' again'}: the homeserver reached us`, {
        round_trip_ms: result.durationMs,
      });
    } else if (!result.ok && (before === undefined || before.ok || before.reason !== result.reason)) {
      options.log.warn(`application-service ping failed: ${result.reason}; trying again every ${PING_RETRY_MS / 1000} s`);
    }
    last = { result, at: now() };
    options.onResult?.(last);
  };
  const round = async (): Promise<void> => {
    report(await options.ping());
    if (stopped) return;
    timer = setTimeout(() => void round(), last?.result.ok === true ? PING_INTERVAL_MS : PING_RETRY_MS);
    timer.unref();
  };
  return {
    first: round(),
    last: () => last,
    stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
    },
  };
}
