import type { TransactionLog } from '../transactionLog.js';
import { MAX_REMEMBERED } from '../transactionLog.js';
import type { Sublevel } from './sublevel.js';

const seenKey = (txnId: string): string => `seen/${txnId}`;
const slotKey = (slot: number): string => `slot/${String(slot).padStart(5, '0')}`;
const COUNTER_KEY = 'counter';

/**
 * A ring of MAX_REMEMBERED slots: the n-th id goes to slot n mod MAX_REMEMBERED, evicting the id
 * that was there, so the log never grows past its bound.
 */
export async function createLevelTransactionLog(log: Sublevel, capacity = MAX_REMEMBERED): Promise<TransactionLog> {
  let counter = Number((await log.get(COUNTER_KEY)) ?? 0);
  let queue: Promise<void> = Promise.resolve();
  return {
    async has(txnId) {
      return (await log.get(seenKey(txnId))) !== undefined;
    },
    add(txnId) {
      const write = async (): Promise<void> => {
        if ((await log.get(seenKey(txnId))) !== undefined) return;
        const slot = counter % capacity;
        const evicted = (await log.get(slotKey(slot))) as string | undefined;
        const batch = log.batch();
        if (evicted !== undefined) batch.del(seenKey(evicted));
        batch
          .put(seenKey(txnId), Date.now())
          .put(slotKey(slot), txnId)
          .put(COUNTER_KEY, counter + 1);
        await batch.write();
        counter += 1;
      };
      queue = queue.then(write, write);
      return queue;
    },
    async ids() {
      const ids: string[] = [];
      for (let n = Math.max(0, counter - capacity); n < counter; n += 1) {
        const id = (await log.get(slotKey(n % capacity))) as string | undefined;
        if (id !== undefined) ids.push(id);
      }
      return ids;
    },
  };
}
