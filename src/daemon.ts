import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Settings } from './config/settings.js';
import type { Logger } from './log/logger.js';
import { createAddressRecovery } from './protocol/addressRecovery.js';
import { createRegistrationVerifier } from './protocol/registrationRequest.js';
import { createSharedSecretRegistrar } from './homeserver/sharedSecretRegistrar.js';
import { createRegistrationHandler } from './handlers/registrationHandler.js';
import { openNodeStore } from './store/nodeStore.js';
import { createApp } from './http/app.js';

export interface RunningDaemon {
  readonly url: string;
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

export async function startDaemon(settings: Settings, log: Logger): Promise<RunningDaemon> {
  const store = await openNodeStore(settings.datapath);
  const recovery = createAddressRecovery();
  if (recovery.implementation !== 'libsecp256k1') {
    log.warn('libsecp256k1 addon not available: verifying signatures with pure-JS @noble/curves (slower)');
  }
  const register = createRegistrationHandler({
    serverName: settings.serverName,
    verify: createRegistrationVerifier(settings.serverName, recovery.recover),
    store,
    registrar: createSharedSecretRegistrar({
      homeserverUrl: settings.homeserverUrl,
      sharedSecret: settings.sharedSecret,
      timeoutMs: settings.homeserverTimeoutMs,
      login: settings.loginAfterRegister,
    }),
    log,
  });
  const app = createApp({ basePath: settings.basePath, hsToken: settings.hsToken, register, log });
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
    crypto: recovery.implementation,
  });

  let stopping: Promise<void> | undefined;
  return {
    url,
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
