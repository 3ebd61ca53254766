import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Settings } from './config/settings.js';
import type { Logger } from './log/logger.js';
import { createAddressRecovery } from './protocol/addressRecovery.js';
import { createRegistrationVerifier } from './protocol/registrationRequest.js';
import { registrarForBackend } from './homeserver/registrarForBackend.js';
import { pingThroughHomeserver } from './homeserver/appservicePing.js';
import { createRegistrationHandler } from './handlers/registrationHandler.js';
import { createTransactionHandler } from './handlers/transactionHandler.js';
import { createUserQuery } from './handlers/userQuery.js';
import { openStore } from './store/database.js';
import { createApp } from './http/app.js';

export interface RunningDaemon {
  readonly url: string;
  /** The start-up ping through the homeserver, settled once it has been logged. */
  readonly ping: Promise<void>;
  /** Stops accepting, lets in-flight requests finish, closes the store. */
  stop(): Promise<void>;
}

export class ListenError extends Error {}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException): void => {
      const reason = error.code === 'EADDRINUSE' ? 'the address is already in use' : error.message;
      reject(new ListenError(`cannot listen on ${host}:${port}: ${reason}`));
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

export async function startDaemon(settings: Settings, log: Logger): Promise<RunningDaemon> {
  const store = await openStore(settings.datapath);
  const recovery = createAddressRecovery();
  if (recovery.implementation !== 'libsecp256k1') {
    log.warn('libsecp256k1 addon not available: verifying signatures with pure-JS @noble/curves (slower)');
  }
  const app = createApp({
    basePath: settings.basePath,
    hsToken: settings.hsToken,
    register: createRegistrationHandler({
      serverName: settings.serverName,
      verify: createRegistrationVerifier(settings.serverName, recovery.recover),
      nodes: store.nodes,
      registrar: registrarForBackend(settings),
      log,
    }),
    onTransaction: createTransactionHandler({ serverName: settings.serverName, nodes: store.nodes, transactions: store.transactions, log }),
    queryUser: createUserQuery(settings.serverName, store.nodes),
    log,
  });
  const server = createServer(app);
  try {
    await listen(server, settings.port, settings.host);
  } catch (error) {
    await store.close();
    throw error;
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

  let stopping: Promise<void> | undefined;
  return {
    url,
    ping: pingAndLog(settings, log),
    stop() {
      stopping ??= (async () => {
        log.info('stopping: no new connections, finishing requests in flight');
        const forceAfter = setTimeout(() => server.closeAllConnections(), settings.homeserverTimeoutMs + 5000);
        await new Promise<void>((resolve) => server.close(() => resolve()));
        clearTimeout(forceAfter);
        await store.close();
        log.info('stopped');
      })();
      return stopping;
    },
  };
}
