import cluster from 'node:cluster';
import { createServer, type Server } from 'node:http';
import type { Settings } from '../config/settings.js';
import { createLogger, type Logger } from '../log/logger.js';
import { RefusalTally } from '../log/refusalTally.js';
import { createWorkerMetrics, type WorkerMetrics } from '../metrics/metrics.js';
import { createAddressRecovery } from '../protocol/addressRecovery.js';
import { createRegistrationVerifier } from '../protocol/registrationRequest.js';
import { createRequestListener } from '../http/app.js';
import { answerClientError } from '../http/clientErrors.js';
import { createClientKey } from '../http/clientKey.js';
import { registerRoute } from '../http/registerRoute.js';
import { IpcPeer } from './ipc.js';
import { primaryApiOver, type PrimaryApi } from './primaryApi.js';

/** How often a worker hands its refusal counts to the primary, which logs them per summary interval. */
const REPORT_INTERVAL_MS = 1000;

export interface WorkerServerDeps {
  readonly settings: Settings;
  readonly api: PrimaryApi;
  readonly log: Logger;
  readonly metrics: WorkerMetrics;
  readonly refusals: RefusalTally;
}

/**
 * A worker's public listener: it reads, validates, rate-limits (through the primary) and verifies;
 * verified registrations, transactions and user queries go to the primary.
 */
export function createWorkerServer(deps: WorkerServerDeps): Server {
  const { settings, api, log } = deps;
  const listener = createRequestListener({
    basePath: settings.basePath,
    hsToken: settings.hsToken,
    registerRoute: registerRoute({
      clientKey: createClientKey(settings.trustedProxies, settings.rateLimitIpv6Prefix),
      limitClient: settings.rateLimitClientPerMinute === 0 ? undefined : (key) => api.limitClient(key),
      verify: createRegistrationVerifier(settings.serverName, createAddressRecovery().recover),
      register: (node) => api.register(node),
      log,
      refused: (outcome, client) => deps.refusals.add(outcome, client),
      count: deps.metrics.registration,
    }),
    onTransaction: (txnId, body) => api.transaction(txnId, body),
    queryUser: (userId) => api.queryUser(userId),
    log,
  });
  // Slow clients get clientTimeoutMs for headers and body; the check runs every second, not every 30 s.
  const server = createServer(
    { headersTimeout: settings.clientTimeoutMs, requestTimeout: settings.clientTimeoutMs, connectionsCheckingInterval: 1000 },
    listener,
  );
  server.on('clientError', answerClientError);
  return server;
}

function listen(server: Server, settings: Settings): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException): void => {
      const reason = error.code === 'EADDRINUSE' ? 'the address is already in use' : error.message;
      reject(new Error(`cannot listen on ${settings.host}:${settings.port}: ${reason}`));
    };
    server.once('error', onError);
    server.listen(settings.port, settings.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/**
 * The worker process: asks the primary for its settings, serves until told to stop (or SIGTERM/SIGINT),
 * and exits at once when the primary is gone. SIGHUP is the primary's: a worker ignores it.
 */
export function runWorker(): void {
  let log: Logger | undefined;
  let server: Server | undefined;
  let stopping: Promise<void> | undefined;
  let forceCloseAfterMs = 0;
  const refusals = new RefusalTally();
  const metrics = createWorkerMetrics();

  const peer = new IpcPeer(
    {
      send: (packet, done) => process.send?.(packet, undefined, {}, done),
      onMessage: (listener) => process.on('message', listener),
    },
    {
      start: (settings: Settings) => void start(settings),
      stop: () => void stop(),
      metrics: () => metrics.registry.getMetricsAsJSON(),
    },
    (method, error) => log?.error(`the primary's ${method} failed here`, { reason: (error as Error).message }),
  );
  const api = primaryApiOver(peer);

  const report = (): void => {
    if (!refusals.empty) api.reportRefusals(refusals.drain());
  };

  async function start(settings: Settings): Promise<void> {
    log = createLogger({ verbosity: settings.verbosity, secrets: [settings.hsToken], fields: { worker: cluster.worker?.id } });
    try {
      server = createWorkerServer({ settings, api, log, metrics, refusals });
      forceCloseAfterMs = settings.homeserverTimeoutMs + 5000;
      await listen(server, settings);
      setInterval(report, REPORT_INTERVAL_MS).unref();
    } catch (error) {
      peer.notify('failedToStart', [(error as Error).message]);
      await peer.flushNow();
      process.exit(1);
    }
  }

  /** Stops accepting, lets requests in flight finish (cut after the homeserver timeout), reports, exits 0. */
  function stop(): Promise<void> {
    stopping ??= (async () => {
      const active = server;
      if (active?.listening === true) {
        const force = setTimeout(() => active.closeAllConnections(), forceCloseAfterMs);
        await new Promise<void>((resolve) => active.close(() => resolve()));
        clearTimeout(force);
      }
      report();
      await peer.flushNow();
      await log?.close();
      process.exit(0);
    })();
    return stopping;
  }

  process.on('SIGHUP', () => {});
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  // The primary is gone: nothing can be registered any more, and nobody would replace this worker.
  process.on('disconnect', () => process.exit(1));
  process.on('unhandledRejection', (reason) => {
    log?.error('unhandled promise rejection', { reason: reason instanceof Error ? reason.message : String(reason) });
  });
  peer.notify('hello', []);
}
