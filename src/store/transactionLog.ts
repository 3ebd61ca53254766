import type { Sublevel } from './sublevel.js';

/** Remembers the ids of the last MAX_REMEMBERED transactions the homeserver sent, across restarts. */
export interface TransactionLog {
  has(txnId: string): Promise<boolean>;
  add(txnId: string): Promise<void>;
}

/** Synapse retries a failed transaction with the same id soon after; far more than it ever has in flight. */
export const MAX_REMEMBERED = 10_000;

const seenKey = (txnId: string): string => `seen/${txnId}`;
const slotKey = (slot: number): string => `slot/${String(slot).padStart(5, '0')}`;
const COUNTER_KEY = 'counter';

/**
 * A ring of MAX_REMEMBERED slots: the n-th id goes to slot n mod MAX_REMEMBERED, evicting the id
 * that was there, so the log never grows past its bound.
 */
export async function createTransactionLog(log: Sublevel, capacity = MAX_REMEMBERED): Promise<TransactionLog> {
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
  };
}
