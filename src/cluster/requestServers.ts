import type { MetricsSnapshot } from '../metrics/metrics.js';

/** The metrics of the processes serving requests: each with its slot, and the last of those that exited since. */
export interface ServersMetrics {
  readonly live: readonly { readonly slot: number; readonly value: MetricsSnapshot }[];
  readonly retired: readonly MetricsSnapshot[];
}

/**
 * What serves the public listener: the primary itself (InProcessServer), alone with `--workers 0` or beside its worker
 * processes (ServingProcesses, Supervisor).
 */
export interface RequestServers {
  /** The listeners there should be. */
  readonly count: number;
  /** Workers started in place of one that exited. */
  readonly replacements: number;
  /** Resolves once every listener listens; rejects with a StartError when one cannot. */
  start(): Promise<void>;
  /** Stops accepting; requests in flight are finished (cut after the homeserver timeout). */
  stop(): Promise<void>;
  /** How many listeners answer, within `timeoutMs`, that they take a connection now. */
  serving(timeoutMs: number): Promise<number>;
  /** Their request metrics, waiting `timeoutMs` at most for each. */
  metrics(timeoutMs: number): Promise<ServersMetrics>;
}
