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
      // The node's retry, on worker 2 before worker 1 reported: the same 200 again.
      assert.equal((await api.register(node, request(2))).userId, `@${node.localpart}:${SERVER}`);
      api.delivered([node.localpart], true, 2);
      api.delivered([node.localpart], false, 1); // the first connection was gone
      await settled();
      await assert.rejects(api.register(node, request(1)), (error: unknown) => error instanceof MatrixError && error.status === 409);

      // In the other order too: the lost answer said first, then the one that reached it.
      const other = signRegistration(randomPrivateKey(), SERVER);
      await api.register(other, request(1));
      await api.register(other, request(2));
      api.delivered([other.localpart], false, 1);
      api.delivered([other.localpart], true, 2);
      await settled();
      await assert.rejects(api.register(other, request(2)), (error: unknown) => error instanceof MatrixError && error.status === 409);

      // Each answer lost (one said, one worker gone): the record stays unanswered, and the next retry gets its 200.
      const lost = signRegistration(randomPrivateKey(), SERVER);
      await api.register(lost, request(1));
      await api.register(lost, request(2));
      api.delivered([lost.localpart], false, 2);
      state.workerGone(1);
      api.delivered([lost.localpart], true, 1); // said by a worker already counted as gone: ignored
      await settled();
      assert.equal((await api.register(lost, request(2))).userId, `@${lost.localpart}:${SERVER}`);

      // Over IPC, a worker is who the supervisor says: its own word on it (the request's worker field) counts for nothing.
      const claimed = signRegistration(randomPrivateKey(), SERVER);
      // As IpcPeer calls them: with whatever arrived.
      const call = (worker: number, method: string, ...args: unknown[]): unknown =>
        (primaryApiHandlers(api, worker)[method] as (...values: unknown[]) => unknown)(...args);
      await call(2, 'register', claimed, request(9));
      call(9, 'delivered', [claimed.localpart], true);
      await settled();
      assert.equal((await api.register(claimed, request(2))).userId, `@${claimed.localpart}:${SERVER}`, 'worker 9 delivered nothing');
      call(2, 'delivered', [claimed.localpart], true);
      await settled();
      await assert.rejects(api.register(claimed, request(2)), (error: unknown) => error instanceof MatrixError && error.status === 409);
    } finally {
      await state.registration.close();
      await store.close();
    }
  });
});
