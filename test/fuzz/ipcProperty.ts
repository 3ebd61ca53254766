import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { primaryApiHandlers, type PrimaryApi } from '../../src/cluster/primaryApi.js';
import { RefusalSummaries } from '../../src/cluster/refusalSummaries.js';
import type { Handlers } from '../../src/cluster/ipc.js';
import { resolveSettings } from '../../src/config/settings.js';
import { isNodeLocalpart } from '../../src/protocol/nodeId.js';
import { randomPrivateKey, signRegistration } from '../../src/protocol/signRegistration.js';
import { openLevelStore } from '../../src/store/leveldb/levelStore.js';
import type { Store } from '../../src/store/store.js';
import { capturingLogger } from '../support/capturingLogger.js';
import { primaryBesideFakeHomeserver } from '../support/primaryBesideFakeHomeserver.js';
import type { IpcCase } from './arbitraries.js';
import { fillValue } from './fill.js';

const SERVER = 'photon.test';
const SECRETS = {
  hsToken: 'hs-token-of-the-fuzzed-primary',
  asToken: 'as-token-of-the-fuzzed-primary',
  sharedSecret: 'shared-secret-of-the-fuzzed-primary',
};

/** The primary's handlers in this process, on a LevelDB store on disk, as a compromised worker would call them. */
export interface FuzzedPrimary {
  readonly handlers: Handlers;
  readonly api: PrimaryApi;
  run(input: IpcCase): Promise<void>;
  close(): Promise<void>;
}

export async function startFuzzedPrimary(): Promise<FuzzedPrimary> {
  const settings = resolveSettings([
    {
      source: 'fuzz',
      values: {
        matrixdomain: SERVER,
        sharesecret: SECRETS.sharedSecret,
        astoken: SECRETS.asToken,
        hstoken: SECRETS.hsToken,
        'rate-limit-client': 1_000_000,
      },
    },
  ]).settings;
  const datapath = mkdtempSync(join(tmpdir(), 'regservice-fuzz-ipc-'));
  const store: Store = await openLevelStore(datapath);
  const logger = capturingLogger(Object.values(SECRETS));
  const summaries = new RefusalSummaries(logger.log, 3_600_000, 10);
  const malformed: string[] = [];
  const { api, registration } = primaryBesideFakeHomeserver({
    settings,
    store,
    log: logger.log,
    tally: summaries.tally,
    onRegister: (node) => {
      // Only what a request that passed a worker's checks can carry may reach the homeserver.
      if (!isNodeLocalpart(node.localpart) || !/^[0-9a-f]{130}$/i.test(node.password) || typeof node.displayname !== 'string')
        malformed.push(JSON.stringify(node).slice(0, 300));
    },
  });
  const handlers = primaryApiHandlers(api, 1);
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  let known = '';
  /** A client address per registration: the ceilings of new accounts, on as by default, never refuse one. */
  let clients = 0;

  const fill = (value: unknown, fresh: string): unknown =>
    fillValue(value, { localpart: fresh, knownNode: known || fresh, hsToken: SECRETS.hsToken, sharedSecret: SECRETS.sharedSecret });

  return {
    handlers,
    api,
    async run(input) {
      const fresh = signRegistration(randomPrivateKey(), SERVER);
      const handler = Object.hasOwn(handlers, input.method) ? handlers[input.method] : undefined;
      const args = input.args.map((arg) => fill(arg, fresh.localpart));
      // As IpcPeer calls a handler: whatever it throws or rejects with becomes the worker's error; it must settle.
      const call = Promise.resolve().then(() => (handler as ((...values: unknown[]) => unknown) | undefined)?.(...args));
      const settled = await Promise.race([
        call.then(
          () => true,
          () => true,
        ),
        new Promise<false>((resolve) => setTimeout(() => resolve(false), 5000)),
      ]);
      if (!settled) throw new Error(`${input.method} did not settle within 5 s`);
      // The primary still registers a node whose worker sent it properly, and still writes its summary.
      const node = signRegistration(randomPrivateKey(), SERVER);
      clients += 1;
      const client = `10.${(clients >> 8) & 255}.${clients & 255}.1`;
      const user = await api.register(node, { client, address: client, elapsedMs: 1, worker: 1 });
      if (user.userId !== `@${node.localpart}:${SERVER}`) throw new Error(`registered as ${user.userId}`);
      api.delivered([node.localpart], true, 1);
      known = node.localpart;
      summaries.summarize();
      await new Promise((resolve) => setImmediate(resolve));
      if (malformed.length > 0) throw new Error(`the homeserver was asked to create ${malformed[0]}`);
      if (unhandled.length > 0) throw new Error(`unhandled rejection: ${String(unhandled[0])}`);
      for (const line of logger.lines()) {
        for (const secret of Object.values(SECRETS)) if (line.includes(secret)) throw new Error(`a secret in the log: ${line}`);
        if (line.startsWith('forged line')) throw new Error(`a line a worker forged: ${line}`);
      }
    },
    async close() {
      process.off('unhandledRejection', onUnhandled);
      summaries.stop();
      await registration.close();
      await store.close();
      rmSync(datapath, { recursive: true, force: true });
    },
  };
}
