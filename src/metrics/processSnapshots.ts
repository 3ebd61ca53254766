import { AggregatorRegistry } from 'prom-client';
import type { MetricsSnapshot } from './metrics.js';

/** The Node.js process metrics (prom-client's defaults, under this service's prefix): each process has its own. */
function isPerProcess(name: string): boolean {
  return name.startsWith('regservice_process_') || name.startsWith('regservice_nodejs_');
}

/**
 * One process's snapshot with its process metrics labelled `process` (`primary`, or the worker's slot): memory, CPU
 * and event-loop lag of each process, under a label that never grows (a replacement takes its slot). A per-process
 * counter that restarts with its process is a reset Prometheus reads as one.
 */
export function labelProcess(snapshot: MetricsSnapshot, process: string): MetricsSnapshot {
  return snapshot.map((metric) =>
    isPerProcess(metric.name)
      ? {
          ...metric,
          // Each process's series is its own now: none is summed or dropped (prom-client omits process_start_time_seconds).
          aggregator: 'first' as const,
          values: metric.values.map((value) => ({ ...value, labels: { ...value.labels, process } })),
        }
      : metric,
  );
}

/**
 * What the service counted in workers that exited, kept so that its counters, summed over the processes, never go
 * down when a worker is replaced (Prometheus would read a reset, and rate() would spike). Only the service's own
 * counters and histograms are kept: per-process series start again with their process.
 */
export class RetiredCounts {
  private kept: MetricsSnapshot = [];
  /** Adds one after another: two scrapes at once must not both fold into the same old sum. */
  private adding: Promise<void> = Promise.resolve();

  /** Folds these in; once it resolves, `snapshot` holds them and every add begun before. */
  add(snapshots: readonly MetricsSnapshot[]): Promise<void> {
    this.adding = this.adding.catch(() => undefined).then(() => this.fold(snapshots));
    return this.adding;
  }

  private async fold(snapshots: readonly MetricsSnapshot[]): Promise<void> {
    if (snapshots.length === 0) return;
    // prom-client's types give `type` as an enum; its snapshots hold the names ('counter').
    const counts = snapshots.map((snapshot) =>
      snapshot.filter((metric) => !isPerProcess(metric.name) && ['counter', 'histogram'].includes(String(metric.type))),
    );
    this.kept = await AggregatorRegistry.aggregate([this.kept, ...counts]).getMetricsAsJSON();
  }

  get snapshot(): MetricsSnapshot {
    return this.kept;
  }
}
