import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { after, describe, it } from '../support/timedTests.js';
import { tempDir } from '../support/tempDir.js';
import { Level } from 'level';
import { createTransactionHandler } from '../../src/handlers/transactionHandler.js';
import { createUserQuery } from '../../src/handlers/userQuery.js';
import { createLevelTransactionLog } from '../../src/store/leveldb/levelTransactionLog.js';
import { closeStores, STORE_KINDS } from '../support/storeKinds.js';
import { capturingLogger } from '../support/capturingLogger.js';

const SERVER = 'hs.example.org';
const LOCALPART = '0x' + 'ab'.repeat(20);
const USER = `@${LOCALPART}:${SERVER}`;
after(closeStores);

describe('transaction log', () => {
  it('remembers at most its capacity, forgetting the oldest, and keeps its place across reopening', async () => {
    const path = join(tempDir('regservice-txn-'), 'db');
    let db = new Level<string, unknown>(path, { valueEncoding: 'json' });
    let log = await createLevelTransactionLog(db.sublevel<string, unknown>('t', { valueEncoding: 'json' }), 3);
    for (const id of ['a', 'b', 'c', 'd']) await log.add(id);
    assert.deepEqual(await Promise.all(['a', 'b', 'c', 'd'].map((id) => log.has(id))), [false, true, true, true]);
    await db.close();

    db = new Level<string, unknown>(path, { valueEncoding: 'json' });
    log = await createLevelTransactionLog(db.sublevel<string, unknown>('t', { valueEncoding: 'json' }), 3);
    await log.add('e');
    await log.add('c'); // already remembered: takes no slot
    assert.deepEqual(await Promise.all(['b', 'c', 'd', 'e'].map((id) => log.has(id))), [false, true, true, true]);
    let keys = 0;
    for await (const _key of db.sublevel('t').keys()) keys += 1;
    assert.equal(keys, 3 * 2 + 1, 'three seen ids, three slots, one counter');
    await db.close();
  });
});

for (const kind of STORE_KINDS)
  describe(`transaction handler with a ${kind.name} store`, () => {
    it("processes a transaction once and moves registered nodes' last seen forward", async () => {
      const store = await kind.fresh();
      await store.nodes.put({ localpart: LOCALPART, userId: USER, displayname: 'abab-x', registeredAt: '2026-01-01T00:00:00.000Z' });
      const handle = createTransactionHandler({
        serverName: SERVER,
        nodes: store.nodes,
        transactions: store.transactions,
        log: capturingLogger().log,
      });
      const at = (ms: number) => ({ type: 'm.room.message', sender: USER, origin_server_ts: ms });
      const t1 = Date.parse('2026-02-01T00:00:00Z');

      assert.equal(
        await handle('1', {
          events: [at(t1), at(t1 - 1000), { sender: `@0x${'cd'.repeat(20)}:${SERVER}` }, { sender: `@${LOCALPART}:other.org` }, null],
        }),
        'processed',
      );
      assert.equal((await store.nodes.get(LOCALPART))?.lastSeen, '2026-02-01T00:00:00.000Z');
      assert.equal(await handle('1', { events: [at(t1 + 5000)] }), 'duplicate');
      assert.equal((await store.nodes.get(LOCALPART))?.lastSeen, '2026-02-01T00:00:00.000Z');
      assert.equal(await handle('2', { events: [at(t1 - 5000)] }), 'processed');
      assert.equal((await store.nodes.get(LOCALPART))?.lastSeen, '2026-02-01T00:00:00.000Z', 'never moves back');
      assert.equal(await store.nodes.get('0x' + 'cd'.repeat(20)), undefined, 'unknown senders create nothing');
      await store.close();
    });

    it('acknowledges a transaction whatever one event holds: an event with an impossible time is skipped and counted', async () => {
      const store = await kind.fresh();
      await store.nodes.put({ localpart: LOCALPART, userId: USER, displayname: 'abab-x', registeredAt: '2026-01-01T00:00:00.000Z' });
      const logger = capturingLogger();
      const handle = createTransactionHandler({
        serverName: SERVER,
        nodes: store.nodes,
        transactions: store.transactions,
        log: logger.log,
      });
      const events = [
        { sender: USER, origin_server_ts: 8.64e15 + 1 },
        { sender: USER, origin_server_ts: -1e300 },
        { sender: USER, origin_server_ts: Date.parse('2026-03-01T00:00:00Z') },
      ];
      assert.equal(await handle('odd', { events }), 'processed');
      assert.equal((await store.nodes.get(LOCALPART))?.lastSeen, '2026-03-01T00:00:00.000Z', 'the good event still counts');
      assert.ok(
        logger.lines().some((line) => /skipped events whose origin_server_ts is not a usable time txn_id=odd skipped=2/.test(line)),
      );
      assert.equal(await handle('odd', { events }), 'duplicate');
      await store.close();
    });

    it('skips and counts events from more than five minutes ahead of its clock: none pins a last seen in the future', async () => {
      const store = await kind.fresh();
      await store.nodes.put({ localpart: LOCALPART, userId: USER, displayname: 'abab-x', registeredAt: '2026-01-01T00:00:00.000Z' });
      const logger = capturingLogger();
      const clock = Date.parse('2026-12-02T12:00:00Z');
      const handle = createTransactionHandler({
        serverName: SERVER,
        nodes: store.nodes,
        transactions: store.transactions,
        log: logger.log,
        now: () => new Date(clock),
      });
      const at = (ms: number) => ({ sender: USER, origin_server_ts: ms });
      const year9999 = Date.parse('9999-12-31T23:59:59.999Z');
      const year10000 = Date.parse('+010000-01-01T00:00:00.000Z');
      const events = [at(year9999), at(year10000), at(clock + 6 * 60_000), at(-1), at(clock + 4 * 60_000)];
      assert.equal(await handle('ahead', { events }), 'processed');
      assert.equal((await store.nodes.get(LOCALPART))?.lastSeen, '2026-12-02T12:04:00.000Z', "within the clocks' difference it counts");
      const warnings = logger.lines().join('\n');
      assert.match(
        warnings,
        /skipped events whose origin_server_ts is more than 5 minutes ahead of this gate's clock txn_id=ahead skipped=3/,
      );
      assert.match(warnings, /skipped events whose origin_server_ts is not a usable time txn_id=ahead skipped=1/);
      assert.equal(
        await handle('later', { events: [at(Date.parse('2026-12-02T12:10:00Z') - 5 * 60_000), at(Date.parse('2020-01-01T00:00:00Z'))] }),
        'processed',
      );
      assert.equal((await store.nodes.get(LOCALPART))?.lastSeen, '2026-12-02T12:05:00.000Z', 'moves forward, never back');
      await store.close();
    });

    it('acknowledges a body without an events array, saying so: refused, the homeserver would send it again for ever', async () => {
      const store = await kind.fresh();
      const logger = capturingLogger();
      const handle = createTransactionHandler({
        serverName: SERVER,
        nodes: store.nodes,
        transactions: store.transactions,
        log: logger.log,
      });
      for (const [index, body] of [undefined, {}, { events: {} }, [], 'text'].entries())
        assert.equal(await handle(`x${index}`, body), 'processed');
      assert.equal(await store.transactions.has('x1'), true);
      assert.equal(await handle('x1', {}), 'duplicate');
      assert.equal(logger.lines().filter((line) => / warn a transaction without an events array: acknowledged/.test(line)).length, 5);
      await store.close();
    });
  });

for (const kind of STORE_KINDS)
  describe(`user query with a ${kind.name} store`, () => {
    it('knows only nodes recorded for this server', async () => {
      const store = await kind.fresh();
      await store.nodes.put({ localpart: LOCALPART, userId: USER, displayname: 'abab-x', registeredAt: '2026-01-01T00:00:00.000Z' });
      const query = createUserQuery(SERVER, store.nodes);
      assert.equal(await query(USER), true);
      assert.equal(await query(`@${LOCALPART}:other.org`), false);
      assert.equal(await query(`@0x${'cd'.repeat(20)}:${SERVER}`), false);
      assert.equal(await query('@alice:hs.example.org'), false);
      await store.close();
    });
  });

for (const kind of STORE_KINDS)
  describe(`forgetting records with a ${kind.name} store`, () => {
    it('is not undone by an answered mark or a last-seen time read while the forget was being written', async () => {
      const store = await kind.fresh();
      const record = {
        localpart: LOCALPART,
        userId: USER,
        displayname: 'abab-x',
        registeredAt: '2026-01-01T00:00:00.000Z',
        answered: false,
      };
      for (const which of [[LOCALPART], 'all'] as const) {
        await store.nodes.put(record);
        const forgotten = store.nodes.forget(which);
        // The forget has read the record and queued its delete; these read it before the delete is written.
        await new Promise((resolve) => setImmediate(resolve));
        await Promise.all([store.nodes.markAnswered([LOCALPART], true), store.nodes.touch(LOCALPART, '2026-02-01T00:00:00.000Z')]);
        assert.equal(await forgotten, 1);
        assert.equal(await store.nodes.get(LOCALPART), undefined, `forget ${String(which)}`);
      }
      await store.close();
    });
  });
