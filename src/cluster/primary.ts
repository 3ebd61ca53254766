import type { Server } from 'node:http';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Settings } from '../config/settings.js';
import type { Logger } from '../log/logger.js';
import { loadAddressPolicy, type AddressPolicy } from '../access/addressLists.js';
import { UntrustedFileError } from '../config/trustedFile.js';
import { sharedSettingDifferences, sharedSettingsOf } from '../config/sharedSettings.js';
import { createAddressRecovery } from '../protocol/addressRecovery.js';
import { CallLimiter } from '../homeserver/callLimiter.js';
import { registrarForBackend } from '../homeserver/registrarForBackend.js';
import type { NewNode } from '../homeserver/registrar.js';
import { pingThroughHomeserver } from '../homeserver/appservicePing.js';
import { startPingMonitor } from '../homeserver/pingMonitor.js';
import { createUserExists } from '../homeserver/userExists.js';
import { homeserverVersions } from '../homeserver/homeserverVersions.js';
import { openServiceStore } from '../store/openStore.js';
import { createMetricsServer, type Readiness } from '../http/metricsServer.js';
import { aggregateMetrics, createPrimaryMetrics, metricsOptionsFor } from '../metrics/metrics.js';
import { labelProcess, RetiredCounts } from '../metrics/processSnapshots.js';
import { ConnectionSpreading } from './connectionSpreading.js';
import { createPrimaryApi, primaryApiHandlers } from './primaryApi.js';
import { RefusalSummaries } from './refusalSummaries.js';
import { InProcessServer } from './inProcessServer.js';
import type { RequestServers } from './requestServers.js';
import { ServingProcesses } from './servingProcesses.js';
import { StartError, Supervisor } from './supervisor.js';
import { refusalLineShare, workerSettingsOf } from './workerSettings.js';

export { StartError } from './supervisor.js';

export interface RunningPrimary {
  readonly url: string;
  /** Start-up work against the homeserver (ping, reconciliation), settled once logged. */
  readonly startup: Promise<void>;
  /** Rereads the allow and deny lists; keeps the old ones if the new ones are bad. */
  reloadLists(): void;
  /** Stops the workers (they finish requests in flight), then closes the store. */
  stop(): Promise<void>;
}

/** How long /metrics, /ready and /health wait for each worker's answer (then /ready and /health count it as not serving). */
const WORKER_ANSWER_MS = 1000;

const WORKER_ENTRY = fileURLToPath(new URL('./workerEntry.js', import.meta.url));

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(new StartError(`cannot listen on ${host}:${port}: ${error.code ?? error.message}`)),
    );
    server.listen(port, host, () => resolve());
  });
}

/** Often enough that an expired lease is reconciled soon after, never more than once a second or less than once a minute. */
function reconcileIntervalMs(leaseMs: number): number {
  return Math.min(60_000, Math.max(1000, Math.floor(leaseMs / 2)));
}

function addressPolicy(settings: Settings): { policy: AddressPolicy; summary: string } {
  return loadAddressPolicy({ allowFile: settings.allowList, denyFile: settings.denyList });
}

/**
 * The primary process: the only one that opens the store and calls the homeserver. It owns the rate
 * limits, one registration per node at a time, pending entries and their reconciliation, transaction
 * de-duplication, the address lists (SIGHUP) and the start-up ping. It serves the listener too, and its workers accept
 * from the same socket beside it.
 */
export async function startPrimary(settings: Settings, log: Logger, onCrashLoop: (reason: string) => void): Promise<RunningPrimary> {
  let lists: { policy: AddressPolicy; summary: string };
  try {
    lists = addressPolicy(settings);
  } catch (error) {
    if (error instanceof UntrustedFileError) throw error;
    throw new StartError((error as Error).message);
  }
  const store = await openServiceStore(settings, (error) =>
    log.warn('a database connection failed while idle; the pool opens another', { reason: error.message }),
  );
  const crypto = createAddressRecovery().implementation;
  if (crypto !== 'libsecp256k1') {
    log.warn('libsecp256k1 addon not available: verifying signatures with pure-JS @noble/secp256k1 (slower)');
  }
  const calls = new CallLimiter(settings.maxHomeserverCalls, settings.maxQueued);
  const metrics = createPrimaryMetrics(
    {
      inFlight: () => calls.inFlight,
      queued: () => calls.queued,
      refused: () => calls.refused,
      maxInFlight: settings.maxHomeserverCalls,
      maxQueued: settings.maxQueued,
    },
    metricsOptionsFor(settings.metricsPort),
  );
  const retired = new RetiredCounts();
  const registrar = registrarForBackend(settings);
  const logIn = registrar.logIn;
  const userExists = createUserExists({
    homeserverUrl: settings.homeserverUrl,
    asToken: settings.asToken,
    timeoutMs: settings.homeserverTimeoutMs,
  });
  const summaries = new RefusalSummaries(log, settings.refusalSummaryIntervalMs, refusalLineShare(settings.workers));
  const refusals = summaries.tally;
  const spreading = settings.workers === 0 ? undefined : new ConnectionSpreading(log);
  const { api, registration, workerGone } = createPrimaryApi({
    settings,
    store,
    registrar: {
      register: (node) => metrics.timeHomeserverCall('register', () => registrar.register(node)),
      ...(logIn === undefined ? {} : { logIn: (node: NewNode) => metrics.timeHomeserverCall('login', () => logIn(node)) }),
    },
    userExists: (userId) => metrics.timeHomeserverCall('user_exists', () => userExists(userId)),
    calls: (call, network) => calls.run(call, network),
    onCeilingReached: (reached) => {
      metrics.ceilingReached(reached.ceiling);
      if (reached.network === undefined) summaries.ceilingReached(reached.ceiling, Date.now() + reached.retryAfterMs);
    },
    policy: () => lists.policy,
    makeLimiter: (limit) => store.createRateLimiter(limit),
    makeCeiling: (limit) => store.createCeilingCounter(limit),
    log,
    onTransaction: metrics.transaction,
    onRefusals: (report) => refusals.merge(report),
    onWorkerLoad: (load, worker) => spreading?.workerLoad(load, worker),
    refused: (outcome, client) => refusals.add(outcome, client),
    refusalLine: () => refusals.lineAllowed(),
  });

  const inProcess = new InProcessServer({
    settings: { ...workerSettingsOf(settings), maxConnections: settings.primaryMaxConnections },
    api,
    log,
    refusals,
    closeAfterRefusal: spreading === undefined ? undefined : () => spreading.closesNow(),
  });
  const servers: RequestServers =
    spreading === undefined
      ? inProcess
      : new ServingProcesses(
          inProcess,
          new Supervisor({
            count: settings.workers,
            exec: WORKER_ENTRY,
            settings,
            listener: inProcess.server,
            handlers: (worker) => primaryApiHandlers(api, worker),
            log,
            onCrashLoop,
            onWorkerExit: (worker) => {
              workerGone(worker);
              spreading.workerGone(worker);
            },
            stopTimeoutMs: settings.homeserverTimeoutMs + 10_000,
          }),
          spreading,
        );
  /** Listeners that answer, within WORKER_ANSWER_MS, that they take connections. */
  const serving = (): Promise<number> => servers.serving(WORKER_ANSWER_MS);
  const readiness = async (): Promise<Readiness> => {
    const [homeserver, database, workers] = await Promise.allSettled([
      homeserverVersions(settings.homeserverUrl, 2000),
      store.check(),
      serving(),
    ]);
    return {
      homeserver: homeserver.status === 'fulfilled',
      store: database.status === 'fulfilled',
      workers: { serving: workers.status === 'fulfilled' ? workers.value : 0, of: servers.count },
    };
  };
  const metricsServer =
    settings.metricsPort === 0
      ? undefined
      : createMetricsServer({
          metricsText: async () => {
            // Each scrape looks as /ready does, so that an idle service still says whether it could serve.
            const [state, { live, retired: exited }] = await Promise.all([readiness(), servers.metrics(WORKER_ANSWER_MS)]);
            metrics.observe({ ...state, workerReplacements: servers.replacements });
            await retired.add(exited);
            return aggregateMetrics([
              labelProcess(await metrics.registry.getMetricsAsJSON(), 'primary'),
              ...live.map(({ slot, value }) => labelProcess(value, String(slot))),
              retired.snapshot,
            ]);
          },
          serving,
          readiness,
        });
  try {
    await servers.start();
    if (metricsServer !== undefined) await listen(metricsServer, settings.metricsPort, settings.metricsHost);
  } catch (error) {
    await servers.stop();
    summaries.stop();
    await store.close();
    throw error;
  }
  if (metricsServer !== undefined) {
    log.info('metrics listening', { url: `http://${settings.metricsHost}:${settings.metricsPort}/metrics` });
  }
  const host = settings.host.includes(':') ? `[${settings.host}]` : settings.host;
  const url = `http://${host}:${settings.port}${settings.basePath}`;
  log.info('matrix-regservice listening', {
    url,
    server_name: settings.serverName,
    homeserver: settings.homeserverUrl,
    backend: settings.backend,
    store: store.description,
    crypto,
    workers: settings.workers,
  });
  if (settings.allowList !== undefined || settings.denyList !== undefined) log.info(lists.summary);

  // Gates sharing a database count on shared counters and one registry: settings they must agree on are compared.
  const gateName = `${hostname()}:${settings.port}`;
  const compareWithOtherGates = async (): Promise<void> => {
    if (store.gates === undefined) return;
    try {
      const here = sharedSettingsOf(settings);
      for (const difference of sharedSettingDifferences(here, await store.gates.announce(gateName, here))) {
        log.warn('the gates sharing this database disagree on a setting they must share (README, Stores: two gates)', {
          setting: `--${difference.key}`,
          here: difference.here,
          gate: difference.gate,
          there: difference.there,
        });
      }
    } catch (error) {
      log.warn("cannot compare this gate's settings with the other gates sharing its database", { reason: (error as Error).message });
    }
  };
  void compareWithOtherGates();
  // Seen again every hour: a gate that runs for long without a SIGHUP is still compared with.
  const reannounce = setInterval(() => void compareWithOtherGates(), 3_600_000);
  reannounce.unref();

  let reconciling = false;
  const reconcile = async (): Promise<void> => {
    if (reconciling) return;
    reconciling = true;
    try {
      const summary = await registration.reconcilePending();
      if (summary.confirmed + summary.dropped + summary.unresolved > 0) {
        log.info('reconciled registrations left unfinished (a gate stopped or died during them)', { ...summary });
      }
    } catch (error) {
      log.warn('cannot reconcile interrupted registrations now; trying again later', { reason: (error as Error).message });
    } finally {
      reconciling = false;
    }
  };
  // Leases of a gate that died expire: any live gate reconciles them, not only the one that wrote them, and not only at start.
  const reconciler = setInterval(() => void reconcile(), reconcileIntervalMs(settings.pendingLeaseMs));
  reconciler.unref();

  const appserviceId = settings.appserviceId;
  if (appserviceId === undefined) log.warn('no appservice id (give --registration): cannot check that the homeserver reaches us');
  const pings =
    appserviceId === undefined
      ? undefined
      : startPingMonitor({
          ping: () =>
            pingThroughHomeserver({
              homeserverUrl: settings.homeserverUrl,
              appserviceId,
              asToken: settings.asToken,
              timeoutMs: settings.homeserverTimeoutMs,
            }),
          log,
          onResult: (state) => metrics.pingResult(state.result.ok, state.at),
        });

  let stopping: Promise<void> | undefined;
  return {
    url,
    startup: Promise.all([pings?.first, reconcile()]).then(() => undefined),
    reloadLists() {
      try {
        lists = addressPolicy(settings);
        log.info(`reloaded address lists: ${lists.summary}`);
        void compareWithOtherGates();
      } catch (error) {
        log.error(`kept the previous address lists: ${(error as Error).message}`);
      }
    },
    stop() {
      stopping ??= (async () => {
        log.info('stopping: no new connections, finishing requests in flight');
        await servers.stop();
        clearInterval(reconciler);
        clearInterval(reannounce);
        pings?.stop();
        await registration.close();
        if (store.gates !== undefined) await store.gates.leave(gateName).catch(() => undefined);
        summaries.stop();
        metricsServer?.close();
        await store.close();
        log.info('stopped');
      })();
      return stopping;
    },
  };
}
