import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** One process's metrics as prom-client serializes them, to be summed across the cluster. */
export type MetricsSnapshot = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

/** What a worker counts: the answers it gave. */
export interface WorkerMetrics {
  readonly registry: Registry;
  readonly registration: (outcome: string) => void;
}

/** What the primary counts: homeserver calls, their queue, transactions. */
export interface PrimaryMetrics {
  readonly registry: Registry;
  readonly transaction: (outcome: 'processed' | 'duplicate') => void;
  /** A ceiling of new accounts held a registration back. */
  readonly ceilingReached: (ceiling: string) => void;
  /** Times one homeserver call of kind `call` (register, user_exists). */
  timeHomeserverCall<T>(call: string, work: () => Promise<T>): Promise<T>;
}

/**
 * How often the event-loop lag is sampled, in ms. prom-client's default (10) wakes every process 100 times a second
 * even when idle: an idle service's three processes used 13 ms of CPU a second with it here, 2–4 ms with 100, and at
 * Synapse's pace those wake-ups cost every registration more CPU. A loop blocked for longer than this is still seen.
 */
const EVENT_LOOP_SAMPLE_MS = 100;

function processRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'regservice_', eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  return registry;
}

export function createWorkerMetrics(): WorkerMetrics {
  const registry = processRegistry();
  const registrations = new Counter({
    name: 'regservice_registrations_total',
    help: 'Registration requests by outcome (registered, already_registered, forbidden, invalid, homeserver_error, ...)',
    labelNames: ['outcome'],
    registers: [registry],
  });
  return { registry, registration: (outcome) => registrations.inc({ outcome }) };
}

export function createPrimaryMetrics(load: { inFlight(): number; queued(): number }): PrimaryMetrics {
  const registry = processRegistry();
  const transactions = new Counter({
    name: 'regservice_transactions_total',
    help: 'Application-service transactions received from the homeserver, by outcome',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const ceilings = new Counter({
    name: 'regservice_account_ceiling_refusals_total',
    help: 'Registrations refused because a ceiling of new accounts was reached (per network, or the whole service), by ceiling',
    labelNames: ['ceiling'],
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'regservice_homeserver_call_seconds',
    help: 'Duration of calls to the homeserver',
    labelNames: ['call', 'result'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  new Gauge({
    name: 'regservice_homeserver_calls_in_flight',
    help: 'Registrations in progress at the homeserver',
    registers: [registry],
    collect() {
      this.set(load.inFlight());
    },
  });
  new Gauge({
    name: 'regservice_homeserver_calls_queued',
    help: 'Registrations waiting for a homeserver slot',
    registers: [registry],
    collect() {
      this.set(load.queued());
    },
  });
  return {
    registry,
    transaction: (outcome) => transactions.inc({ outcome }),
    ceilingReached: (ceiling) => ceilings.inc({ ceiling }),
    async timeHomeserverCall(call, work) {
      const end = latency.startTimer({ call });
      try {
        const result = await work();
        end({ result: 'ok' });
        return result;
      } catch (error) {
        end({ result: 'error' });
        throw error;
      }
    },
  };
}

export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

/** The whole service's metrics: every process's snapshot, summed (prom-client's cluster aggregation). */
export function aggregateMetrics(snapshots: readonly MetricsSnapshot[]): Promise<string> {
  return AggregatorRegistry.aggregate([...snapshots]).metrics();
}
