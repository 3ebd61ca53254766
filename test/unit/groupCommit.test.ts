import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { after, describe, it } from '../support/timedTests.js';
import { Level } from 'level';
import { createGroupCommit, type LevelWrite } from '../../src/store/leveldb/groupCommit.js';
import { tempDir } from '../support/tempDir.js';

describe('LevelDB group commit', () => {
  const opened: Level<string, unknown>[] = [];
  after(async () => {
    for (const db of opened) await db.close();
  });
  const open = async (): Promise<{ db: Level<string, unknown>; batches: number[] }> => {
    const db = new Level<string, unknown>(join(tempDir('regservice-group-'), 'db'), { valueEncoding: 'json' });
    await db.open();
    opened.push(db);
    const batches: number[] = [];
    type Batch = (operations: readonly LevelWrite[]) => Promise<void>;
    const batch = (db.batch as unknown as Batch).bind(db);
    (db as unknown as { batch: Batch }).batch = (operations) => {
      batches.push(operations.length);
      return batch(operations);
    };
    return { db, batches };
  };

  it('writes what is asked while a batch is written in the next one, and settles each write once its own batch is on disk', async () => {
    const { db, batches } = await open();
    const write = createGroupCommit(db);
    const settled: string[] = [];
    const first = write([{ type: 'put', key: 'a', value: 1 }]).then(() => settled.push('a'));
    await new Promise((resolve) => setImmediate(resolve)); // the first batch is on its way
    const rest = ['b', 'c', 'd'].map((key) => write([{ type: 'put', key, value: 2 }]).then(() => settled.push(key)));
    const removal = write([{ type: 'del', key: 'a' }]).then(() => settled.push('-a'));
    await Promise.all([first, ...rest, removal]);
    assert.deepEqual(batches, [1, 4], 'one batch alone, then the four asked meanwhile in one');
    assert.deepEqual(settled, ['a', 'b', 'c', 'd', '-a']);
    assert.equal(db.getSync('a'), undefined, 'in the order asked: the put, then the delete');
    assert.equal(db.getSync('d'), 2);
  });

  it('writes one batch at once when idle, and a batch that fails rejects its writes', async () => {
    const { db, batches } = await open();
    const write = createGroupCommit(db);
    await write([{ type: 'put', key: 'x', value: 1 }]);
    assert.deepEqual(batches, [1]);
    await db.close();
    await assert.rejects(write([{ type: 'put', key: 'y', value: 1 }]), /not open/i);
  });
});
