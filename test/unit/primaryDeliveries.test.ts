import { strict as assert } from 'node:assert';
import { rmSync } from 'node:fs';
import { after, describe, it } from '../support/timedTests.js';
import { primaryApiHandlers, type PrimaryState } from '../../src/cluster/primaryApi.js';
import { RefusalTally } from '../../src/log/refusalTally.js';
import { resolveSettings } from '../../src/config/settings.js';
import { MatrixError } from '../../src/protocol/matrixError.js';
import { randomPrivateKey, signRegistration } from '../../src/protocol/signRegistration.js';
import { openLevelStore } from '../../src/store/leveldb/levelStore.js';
import type { Store } from '../../src/store/store.js';
import { capturingLogger } from '../support/capturingLogger.js';
import { primaryBesideFakeHomeserver } from '../support/primaryBesideFakeHomeserver.js';
import { tempDir } from '../support/tempDir.js';

const SERVER = 'photon.test';

async function primaryOnLevelDb(datapath: string): Promise<{ state: PrimaryState; store: Store }> {
  const settings = resolveSettings([
    { source: 't', values: { matrixdomain: SERVER, sharesecret: 's', astoken: 'a', hstoken: 'h', 'rate-limit-node': 0 } },
  ]).settings;
  const store = await openLevelStore(datapath);
  const state = primaryBesideFakeHomeserver({ settings, store, log: capturingLogger().log, tally: new RefusalTally() });
  return { state, store };
}

const settled = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 50));
/** Whether `promise` is still unsettled 50 ms from now. */
const pending = (promise: Promise<unknown>): Promise<boolean> =>
  Promise.race([
    promise.then(
      () => false,
      () => false,
    ),
    settled().then(() => true),
  ]);
const inUse = (error: unknown): boolean => error instanceof MatrixError && error.status === 409;

describe("the primary's record of answers on their way", () => {
  const dirs: string[] = [];
  after(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it("a 200 that reached the node through one worker counts, whatever another worker's answer to its retry became", async () => {
    const datapath = tempDir('regservice-deliveries-');
    dirs.push(datapath);
    const { state, store } = await primaryOnLevelDb(datapath);
    try {
      const { api } = state;
      const node = signRegistration(randomPrivateKey(), SERVER);
      const request = (worker: number) => ({ client: '10.0.0.9', address: '10.0.0.9', elapsedMs: 1, worker });
      await api.register(node, request(1));
      // The node's retry, on worker 2 before worker 1 reported: it waits for worker 1's word; lost, so the same 200 again.
      const retry = api.register(node, request(2));
      assert.equal(await pending(retry), true, 'waits while the first answer is on its way');
      api.delivered([node.localpart], false, 1); // the first connection was gone
      assert.equal((await retry).userId, `@${node.localpart}:${SERVER}`);
      api.delivered([node.localpart], true, 2);
      await settled();
      await assert.rejects(api.register(node, request(1)), inUse);

      // The report that the 200 reached the node comes after the node's next request, taken by another worker: 409.
      const quick = signRegistration(randomPrivateKey(), SERVER);
      await api.register(quick, request(1));
      const copy = api.register(quick, request(2));
      assert.equal(await pending(copy), true);
      api.delivered([quick.localpart], true, 1);
      await assert.rejects(copy, inUse);

      // Each answer lost (one said, one worker gone): the record stays unanswered, and the next retry gets its 200.
      const lost = signRegistration(randomPrivateKey(), SERVER);
      await api.register(lost, request(1));
      const lostRetry = api.register(lost, request(2));
      state.workerGone(1);
      assert.equal((await lostRetry).userId, `@${lost.localpart}:${SERVER}`, 'worker 1 gone: its answer reached nobody');
      api.delivered([lost.localpart], false, 2);
      api.delivered([lost.localpart], true, 1); // said by a worker already counted as gone: ignored
      await settled();
      assert.equal((await api.register(lost, request(2))).userId, `@${lost.localpart}:${SERVER}`);
      api.delivered([lost.localpart], false, 2);

      // Over IPC, a worker is who the supervisor says: its own word on it (the request's worker field) counts for nothing.
      const claimed = signRegistration(randomPrivateKey(), SERVER);
      // As IpcPeer calls them: with whatever arrived.
      const call = (worker: number, method: string, ...args: unknown[]): unknown =>
        (primaryApiHandlers(api, worker)[method] as (...values: unknown[]) => unknown)(...args);
      await call(2, 'register', claimed, request(9));
      call(9, 'delivered', [claimed.localpart], true);
      const afterClaim = api.register(claimed, request(3));
      assert.equal(await pending(afterClaim), true, "worker 9's word settled nothing: worker 2's answer is still on its way");
      call(2, 'delivered', [claimed.localpart], true);
      await assert.rejects(afterClaim, inUse);
    } finally {
      await state.registration.close();
      await store.close();
    }
  });
});
