import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { HomeserverError, MatrixError } from '../protocol/matrixError.js';

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
  /** The last application-service ping through the homeserver: whether it succeeded, and when (ms since the epoch). */
  readonly pingResult: (ok: boolean, at: number) => void;
  /** What the service found at a scrape, so that these exist without any traffic. */
  readonly observe: (state: ServiceState) => void;
}

/** The service's state as /ready sees it, and its workers' replacements. */
export interface ServiceState {
  readonly homeserver: boolean;
  readonly store: boolean;
  readonly workers: { readonly serving: number; readonly of: number };
  readonly workerReplacements: number;
}

/**
 * A registry, with the Node.js process metrics (memory, CPU, GC, event-loop lag) when `withProcessMetrics`. Those are
 * collected only when /metrics is served: prom-client samples the event-loop lag every 10 ms, which wakes every
 * process 100 times a second even when the service is idle (on 2 cores, its three processes then used 13 ms of CPU a
 * second here).
 */
function processRegistry(withProcessMetrics: boolean): Registry {
  const registry = new Registry();
  if (withProcessMetrics) collectDefaultMetrics({ register: registry, prefix: 'regservice_' });
  return registry;
}

/** Whether a process collects the Node.js process metrics: only when /metrics is served. */
export interface MetricsOptions {
  readonly processMetrics: boolean;
}

/** The metrics options of every process of a service whose metrics listener is on `metricsPort` (0: none). */
export function metricsOptionsFor(metricsPort: number): MetricsOptions {
  return { processMetrics: metricsPort !== 0 };
}

export function createWorkerMetrics(options: MetricsOptions): WorkerMetrics {
  const registry = processRegistry(options.processMetrics);
  const registrations = new Counter({
    name: 'regservice_registrations_total',
    help: 'Registration requests by outcome (registered, already_registered, forbidden, invalid, homeserver_error, ...)',
    labelNames: ['outcome'],
    registers: [registry],
  });
  return { registry, registration: (outcome) => registrations.inc({ outcome }) };
}

export function createPrimaryMetrics(
  load: {
    inFlight(): number;
    queued(): number;
    /** Registrations refused because the queue was full, since the start. */
    refused?(): number;
    readonly maxInFlight?: number;
    readonly maxQueued?: number;
  },
  options: MetricsOptions,
): PrimaryMetrics {
  const registry = processRegistry(options.processMetrics);
  const gauge = (name: string, help: string): Gauge => new Gauge({ name, help, registers: [registry] });
  const homeserverUp = gauge('regservice_homeserver_up', 'Whether the homeserver answered (client-server API versions) at the last scrape');
  const storeUp = gauge('regservice_store_up', 'Whether the store (LevelDB or PostgreSQL) answered at the last scrape');
  const workersServing = gauge(
    'regservice_workers_serving',
    'Processes serving requests (the primary and its workers) that answered in time that they take connections',
  );
  const workersWanted = gauge('regservice_workers', 'Processes there should be serving requests: the primary and its --workers');
  const ready = gauge(
    'regservice_ready',
    'Whether /ready would answer 200: the homeserver and the store answer, and every process serving takes connections',
  );
  const replacements = new Counter({
    name: 'regservice_worker_restarts_total',
    help: 'Workers started in place of one that exited (a crash, a kill, one that did not answer)',
    registers: [registry],
  });
  let replacementsSeen = 0;
  let refusedSeen = 0;
  new Counter({
    name: 'regservice_homeserver_queue_refusals_total',
    help: 'Registrations refused (503) because the queue of those waiting for a homeserver slot was full (--max-queued)',
    registers: [registry],
    collect() {
      const refused = load.refused?.() ?? 0;
      this.inc(refused - refusedSeen);
      refusedSeen = refused;
    },
  });
  if (load.maxInFlight !== undefined) {
    gauge('regservice_homeserver_calls_max', 'Registrations at the homeserver at once at most (--max-homeserver-calls)').set(
      load.maxInFlight,
    );
  }
  if (load.maxQueued !== undefined) {
    gauge('regservice_homeserver_queue_max', 'Registrations that may wait for a homeserver slot before 503 (--max-queued)').set(
      load.maxQueued,
    );
  }
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
  // Created at the first ping's answer: a gauge without labels would read 0 (a failure) before any ping was made.
  let ping: { readonly up: Gauge; readonly time: Gauge } | undefined;
  const pingGauges = (): { readonly up: Gauge; readonly time: Gauge } =>
    (ping ??= {
      up: new Gauge({
        name: 'regservice_appservice_ping_success',
        help: 'Whether the last application-service ping through the homeserver succeeded (1) or failed (0); absent before the first',
        registers: [registry],
      }),
      time: new Gauge({
        name: 'regservice_appservice_ping_timestamp_seconds',
        help: 'When the last application-service ping through the homeserver had its result (Unix time); absent before the first',
        registers: [registry],
      }),
    });
  return {
    registry,
    observe(state) {
      homeserverUp.set(state.homeserver ? 1 : 0);
      storeUp.set(state.store ? 1 : 0);
      workersServing.set(state.workers.serving);
      workersWanted.set(state.workers.of);
      ready.set(state.homeserver && state.store && state.workers.serving === state.workers.of ? 1 : 0);
      replacements.inc(state.workerReplacements - replacementsSeen);
      replacementsSeen = state.workerReplacements;
    },
    pingResult(ok, at) {
      const { up, time } = pingGauges();
      up.set(ok ? 1 : 0);
      time.set(at / 1000);
    },
    transaction: (outcome) => transactions.inc({ outcome }),
    ceilingReached: (ceiling) => ceilings.inc({ ceiling }),
    async timeHomeserverCall(call, work) {
      const end = latency.startTimer({ call });
      try {
        const result = await work();
        end({ result: 'ok' });
        return result;
      } catch (error) {
        // A refusal the homeserver answered (a user in use, its rate limit) is not a failure of it.
        end({ result: error instanceof MatrixError && !(error instanceof HomeserverError) && error.status < 500 ? 'refused' : 'error' });
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
