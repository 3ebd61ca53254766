import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Settings } from './config/settings.js';
import type { Logger } from './log/logger.js';
import { loadAddressPolicy, type AddressPolicy } from './access/addressLists.js';
import { createAddressRecovery } from './protocol/addressRecovery.js';
import { createRegistrationVerifier } from './protocol/registrationRequest.js';
import { CallLimiter } from './homeserver/callLimiter.js';
import { registrarForBackend } from './homeserver/registrarForBackend.js';
import { pingThroughHomeserver } from './homeserver/appservicePing.js';
import { createUserExists } from './homeserver/userExists.js';
import { createRegistrationService } from './handlers/registrationHandler.js';
import { createTransactionHandler } from './handlers/transactionHandler.js';
import { createUserQuery } from './handlers/userQuery.js';
import { openStore } from './store/database.js';
import { createRequestListener } from './http/app.js';
import { registerRoute } from './http/registerRoute.js';
import { answerClientError } from './http/clientErrors.js';
import { createMetricsServer } from './http/metricsServer.js';
import { createMetrics } from './metrics/metrics.js';
import { homeserverVersions } from './homeserver/homeserverVersions.js';
import { createRateLimits } from './http/rateLimits.js';

export interface RunningDaemon {
  readonly url: string;
  /** Start-up work against the homeserver (ping, reconciliation), settled once logged. */
  readonly startup: Promise<void>;
  /** Rereads the allow and deny lists; keeps the old ones if the new ones are bad. */
  reloadLists(): void;
  /** Stops accepting, lets in-flight requests finish, closes the store. */
  stop(): Promise<void>;
}

export class StartError extends Error {}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException): void => {
      const reason = error.code === 'EADDRINUSE' ? 'the address is already in use' : error.message;
      reject(new StartError(`cannot listen on ${host}:${port}: ${reason}`));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

async function pingAndLog(settings: Settings, log: Logger): Promise<void> {
  if (settings.appserviceId === undefined) {
    log.warn('no appservice id (give --registration): cannot check that the homeserver reaches us');
    return;
  }
  const result = await pingThroughHomeserver({
    homeserverUrl: settings.homeserverUrl,
    appserviceId: settings.appserviceId,
    asToken: settings.asToken,
    timeoutMs: settings.homeserverTimeoutMs,
  });
  if (result.ok) {
    log.info('the homeserver reached us: application-service ping succeeded', { round_trip_ms: result.durationMs });
  } else {
    log.warn(`the homeserver could not reach us: application-service ping failed: ${result.reason}`);
  }
}

function addressPolicy(settings: Settings): { policy: AddressPolicy; summary: string } {
  return loadAddressPolicy({ allowFile: settings.allowList, denyFile: settings.denyList });
}

export async function startDaemon(settings: Settings, log: Logger): Promise<RunningDaemon> {
  let lists: { policy: AddressPolicy; summary: string };
  try {
    lists = addressPolicy(settings);
  } catch (error) {
    throw new StartError((error as Error).message);
  }
  const store = await openStore(settings.datapath);
  const recovery = createAddressRecovery();
  if (recovery.implementation !== 'libsecp256k1') {
    log.warn('libsecp256k1 addon not available: verifying signatures with pure-JS @noble/curves (slower)');
  }
  const calls = new CallLimiter(settings.maxHomeserverCalls, settings.maxQueued);
  const metrics = createMetrics({ inFlight: () => calls.inFlight, queued: () => calls.queued });
  const registrar = registrarForBackend(settings);
  const userExists = createUserExists({ homeserverUrl: settings.homeserverUrl, asToken: settings.asToken, timeoutMs: settings.homeserverTimeoutMs });
  const registration = createRegistrationService({
    serverName: settings.serverName,
    verify: createRegistrationVerifier(settings.serverName, recovery.recover),
    nodes: store.nodes,
    registrar: { register: (node) => calls.run(() => metrics.timeHomeserverCall('register', () => registrar.register(node))) },
    userExists: (userId) => calls.run(() => metrics.timeHomeserverCall('user_exists', () => userExists(userId))),
    policy: () => lists.policy,
    log,
  });
  const onTransaction = createTransactionHandler({ serverName: settings.serverName, nodes: store.nodes, transactions: store.transactions, log });
  const app = createRequestListener({
    basePath: settings.basePath,
    hsToken: settings.hsToken,
    registerRoute: registerRoute({
      handle: registration.register,
      limits: createRateLimits({ perClientPerMinute: settings.rateLimitClientPerMinute, perNodePerMinute: settings.rateLimitNodePerMinute }),
      log,
      trustedProxies: settings.trustedProxies,
      count: metrics.registration,
    }),
    onTransaction: async (txnId, body) => {
      const outcome = await onTransaction(txnId, body);
      metrics.transaction(outcome);
      return outcome;
    },
    queryUser: createUserQuery(settings.serverName, store.nodes),
    log,
  });
  // Slow clients get clientTimeoutMs for headers and body; the check runs every second, not every 30 s.
  const server = createServer(
    { headersTimeout: settings.clientTimeoutMs, requestTimeout: settings.clientTimeoutMs, connectionsCheckingInterval: 1000 },
    app,
  );
  server.on('clientError', answerClientError);
  const metricsServer =
    settings.metricsPort === 0
      ? undefined
      : createMetricsServer({
          metrics,
          homeserverReachable: () => homeserverVersions(settings.homeserverUrl, 2000).then(() => true, () => false),
        });
  try {
    await listen(server, settings.port, settings.host);
    if (metricsServer !== undefined) await listen(metricsServer, settings.metricsPort, settings.metricsHost);
  } catch (error) {
    server.close();
    await store.close();
    throw error;
  }
  if (metricsServer !== undefined) {
    log.info('metrics listening', { url: `http://${settings.metricsHost}:${settings.metricsPort}/metrics` });
  }
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}${settings.basePath}`;
  log.info('matrix-regservice listening', {
    url,
    server_name: settings.serverName,
    homeserver: settings.homeserverUrl,
    backend: settings.backend,
    crypto: recovery.implementation,
  });
  if (settings.allowList !== undefined || settings.denyList !== undefined) log.info(lists.summary);

  const reconcile = async (): Promise<void> => {
    const summary = await registration.reconcilePending();
    if (summary.confirmed + summary.dropped + summary.unresolved > 0) {
      log.info('reconciled registrations interrupted by a stop', { ...summary });
    }
  };

  let stopping: Promise<void> | undefined;
  return {
    url,
    startup: Promise.all([pingAndLog(settings, log), reconcile()]).then(() => undefined),
    reloadLists() {
      try {
        lists = addressPolicy(settings);
        log.info(`reloaded address lists: ${lists.summary}`);
      } catch (error) {
        log.error(`kept the previous address lists: ${(error as Error).message}`);
      }
    },
    stop() {
      stopping ??= (async () => {
        log.info('stopping: no new connections, finishing requests in flight');
        const forceAfter = setTimeout(() => server.closeAllConnections(), settings.homeserverTimeoutMs + 5000);
        await new Promise<void>((resolve) => server.close(() => resolve()));
        clearTimeout(forceAfter);
        metricsServer?.close();
        await store.close();
        log.info('stopped');
      })();
      return stopping;
    },
  };
}
