import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { Level } from 'level';
import { after, describe, it } from '../support/timedTests.js';
import { createGroupCommit, type LevelWrite } from '../../src/store/leveldb/groupCommit.js';
import { createLevelNodeStore } from '../../src/store/leveldb/levelNodeStore.js';
import { openSublevel } from '../../src/store/leveldb/sublevel.js';
import { openLevelStore, STORE_DIRECTORY } from '../../src/store/leveldb/levelStore.js';
import type { NodeRecord, NodeStore } from '../../src/store/nodeStore.js';
import { tempDir } from '../support/tempDir.js';

const record = (index: number, answered?: boolean): NodeRecord => {
  const localpart = `0x${index.toString(16).padStart(40, '0')}`;
  return {
    localpart,
    userId: `@${localpart}:photon.test`,
    displayname: `${localpart.slice(2, 6)}-sig`,
    registeredAt: '2026-12-04T00:00:00.000Z',
    ...(answered === undefined ? {} : { answered }),
  };
};

/** The node store over a database opened here, so that the test sees every write it asks for and every raw value. */
async function storeWithWrites(datapath: string) {
  const db = new Level<string, unknown>(join(datapath, STORE_DIRECTORY), { valueEncoding: 'json' });
  await db.open();
  const sublevels = { nodes: openSublevel(db, 'nodes'), pending: openSublevel(db, 'pending'), unanswered: openSublevel(db, 'unanswered') };
  const writes: LevelWrite[][] = [];
  const commit = createGroupCommit(db);
  const nodes: NodeStore = createLevelNodeStore(sublevels.nodes, sublevels.pending, sublevels.unanswered, {
    holder: 'test',
    leaseMs: 60_000,
    write: (batch) => {
      writes.push([...batch]);
      return commit(batch);
    },
  });
  return { db, nodes, writes, sublevels };
}

const all = async (nodes: NodeStore): Promise<NodeRecord[]> => {
  const records: NodeRecord[] = [];
  for await (const each of nodes.list()) records.push(each);
  return records;
};

describe("LevelDB's record of whether a node's 200 reached it", () => {
  const opened: Level<string, unknown>[] = [];
  after(async () => {
    for (const db of opened) await db.close();
  });

  it('keeps it in a marker beside the record: the mark deletes the marker and leaves the record as written', async () => {
    const datapath = tempDir('regservice-level-marks-');
    const { db, nodes, writes, sublevels } = await storeWithWrites(datapath);
    opened.push(db);
    const [a, b] = [record(1, false), record(2, false)];
    await nodes.confirm(a);
    await nodes.confirm(b);
    assert.equal((await nodes.get(a.localpart))?.answered, false);
    assert.equal(
      (await nodes.claimPending({ ...a, startedAt: a.registeredAt }).then((claim) => ('recorded' in claim ? claim.recorded : undefined)))
        ?.answered,
      false,
      'a claim sees the record unanswered',
    );
    assert.deepEqual(sublevels.nodes.getSync(a.localpart), record(1), 'the value holds no answered');

    writes.length = 0;
    await nodes.markAnswered([a.localpart, record(3).localpart], true);
    assert.deepEqual(writes, [[{ type: 'del', sublevel: sublevels.unanswered, key: a.localpart }]], 'one marker deleted, nothing else');
    assert.equal((await nodes.get(a.localpart))?.answered, true);
    assert.deepEqual(
      (await all(nodes)).map((each) => [each.localpart, each.answered]),
      [
        [a.localpart, true],
        [b.localpart, false],
      ],
    );
    await nodes.markAnswered([a.localpart], false);
    assert.equal((await nodes.get(a.localpart))?.answered, false, 'and back');
    await nodes.markAnswered([a.localpart], true);

    assert.equal(await nodes.forget([b.localpart]), 1);
    assert.equal(sublevels.unanswered.getSync(b.localpart), undefined, "a forgotten node's marker goes with it");
    await nodes.put(record(4, false));
    await nodes.put(record(4, true));
    assert.equal((await nodes.get(record(4).localpart))?.answered, true, 'a record put answered drops its marker');
  });

  it("reads a record an earlier version wrote with answered false as unanswered, through last seen's rewrite, until marked", async () => {
    const datapath = tempDir('regservice-level-legacy-');
    const { db, nodes, sublevels } = await storeWithWrites(datapath);
    opened.push(db);
    const old = record(5, false);
    const oldAnswered = record(6, true);
    await sublevels.nodes.put(old.localpart, old);
    await sublevels.nodes.put(oldAnswered.localpart, oldAnswered);
    assert.equal((await nodes.get(old.localpart))?.answered, false);
    assert.equal((await nodes.get(oldAnswered.localpart))?.answered, true);

    assert.equal(await nodes.touch(old.localpart, '2026-12-04T01:00:00.000Z'), true);
    assert.deepEqual(sublevels.nodes.getSync(old.localpart), { ...record(5), lastSeen: '2026-12-04T01:00:00.000Z' });
    assert.equal((await nodes.get(old.localpart))?.answered, false, 'the marker took over');

    const older = record(7, false);
    await sublevels.nodes.put(older.localpart, older);
    await nodes.markAnswered([older.localpart], true);
    assert.deepEqual(sublevels.nodes.getSync(older.localpart), record(7), 'written again without answered');
    assert.equal((await nodes.get(older.localpart))?.answered, true);
  });

  it('a later run reads the marks as this run left them', async () => {
    const datapath = tempDir('regservice-level-reopen-');
    const first = await openLevelStore(datapath);
    await first.nodes.confirm(record(8, false));
    await first.nodes.confirm(record(9, false));
    await first.nodes.markAnswered([record(9).localpart], true);
    await first.close();
    const later = await openLevelStore(datapath);
    try {
      assert.deepEqual(
        (await all(later.nodes)).map((each) => each.answered),
        [false, true],
      );
    } finally {
      await later.close();
    }
  });
});
