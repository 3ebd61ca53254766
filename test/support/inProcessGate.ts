import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressPolicy } from '../../src/access/addressLists.js';
import { createPrimaryApi } from '../../src/cluster/primaryApi.js';
import { createWorkerServer } from '../../src/cluster/worker.js';
import { resolveSettings, type RawSettings, type Settings } from '../../src/config/settings.js';
import type { NewNode, RegisteredUser, Registrar } from '../../src/homeserver/registrar.js';
import { RefusalTally } from '../../src/log/refusalTally.js';
import { createWorkerMetrics } from '../../src/metrics/metrics.js';
import { openLevelStore } from '../../src/store/leveldb/levelStore.js';
import type { Store } from '../../src/store/store.js';
import { createMemoryRateLimiter } from '../../src/store/memoryRateLimiter.js';
import { createMemoryCeilingCounter } from '../../src/store/memoryCeilingCounter.js';
import { capturingLogger } from './capturingLogger.js';
import type { Scope } from './scope.js';
import { workerSettingsOf } from '../../src/cluster/workerSettings.js';

export const IN_PROCESS_SERVER = 'hs.example.org';
export const IN_PROCESS_HS_TOKEN = 'hs-token-in-process';

export interface InProcessGate {
  /** http://127.0.0.1:<port><the registration url's path> */
  readonly base: string;
  readonly settings: Settings;
  readonly store: Store;
  /** Nodes that reached the homeserver. */
  readonly registered: NewNode[];
  /** The refusals the worker counted (drain() to read them). */
  readonly refusals: RefusalTally;
  readonly lines: () => string[];
  /** Connections the listener holds now. */
  connections(): Promise<number>;
  close(): Promise<void>;
}

/**
 * One worker's listener and the primary's logic in this process, without IPC: the real HTTP route,
 * verifier, rate limits, lists, registration service and a LevelDB store on disk; only the homeserver
 * is a stand-in that records what it was asked to create.
 */
export async function startInProcessGate(
  scope: Scope,
  options: {
    settings?: RawSettings;
    policy?: AddressPolicy;
    registrar?: Registrar;
    /** Whether a refusal's answer closes its connection (the primary's, while it spreads a flood). */
    closeAfterRefusal?: () => boolean;
  } = {},
): Promise<InProcessGate> {
  const settings = resolveSettings([
    {
      source: 'test',
      values: {
        matrixdomain: IN_PROCESS_SERVER,
        sharesecret: 'secret',
        astoken: 'as-token',
        hstoken: IN_PROCESS_HS_TOKEN,
        ...options.settings,
      },
    },
  ]).settings;
  const datapath = mkdtempSync(join(tmpdir(), 'regservice-inprocess-'));
  const store = await openLevelStore(datapath);
  const registered: NewNode[] = [];
  const registrar: Registrar = options.registrar ?? {
    register: async (node): Promise<RegisteredUser> => {
      registered.push(node);
      return { userId: `@${node.localpart}:${IN_PROCESS_SERVER}`, homeServer: IN_PROCESS_SERVER };
    },
  };
  const logger = capturingLogger([IN_PROCESS_HS_TOKEN]);
  const refusals = new RefusalTally();
  const { api, registration } = createPrimaryApi({
    settings,
    store,
    registrar,
    userExists: async () => false,
    policy: () => options.policy ?? (() => {}),
    makeLimiter: (limit) => createMemoryRateLimiter(limit.points, { windowMs: limit.windowMs }),
    makeCeiling: (limit) => createMemoryCeilingCounter(limit),
    log: logger.log,
    onRefusals: (report) => refusals.merge(report),
    refused: (outcome, client) => refusals.add(outcome, client),
    refusalLine: () => refusals.lineAllowed(),
  });
  const { server } = createWorkerServer({
    settings: workerSettingsOf(settings),
    api,
    log: logger.log,
    metrics: createWorkerMetrics({ processMetrics: false }),
    refusals,
    delivered: (localpart, reached) => api.delivered([localpart], reached, 0),
    closeAfterRefusal: options.closeAfterRefusal,
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await registration.close();
      await store.close();
      rmSync(datapath, { recursive: true, force: true });
    })());
  scope.after(close);
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}${settings.basePath}`,
    settings,
    store,
    registered,
    refusals,
    lines: logger.lines,
    connections: () => new Promise((resolve, reject) => server.getConnections((error, count) => (error ? reject(error) : resolve(count)))),
    close,
  };
}
