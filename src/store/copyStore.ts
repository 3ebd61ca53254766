import type { Store } from './store.js';

export interface CopyCount {
  /** Written to the target. */
  readonly copied: number;
  /** Already in the target, left as it was there. */
  readonly present: number;
}

export interface CopySummary {
  readonly nodes: CopyCount;
  readonly pending: CopyCount;
  readonly transactions: CopyCount;
}

/**
 * Copies what `from` holds into `to`, leaving whatever `to` already has: running it again copies nothing. Pending
 * entries are copied only for nodes `to` has neither recorded nor pending; they become reconcilable as the target's
 * leases allow.
 */
export async function copyStore(from: Store, to: Store): Promise<CopySummary> {
  return {
    nodes: await copyEach(
      from.nodes.list(),
      (record) => to.nodes.get(record.localpart),
      (record) => to.nodes.put(record),
    ),
    pending: await copyEach(
      await from.nodes.listPending(),
      async (entry) => (await to.nodes.get(entry.localpart)) ?? (await to.nodes.getPending(entry.localpart)),
      async (entry) => void (await to.nodes.claimPending(entry)),
    ),
    transactions: await copyEach(
      await from.transactions.ids(),
      async (txnId) => ((await to.transactions.has(txnId)) ? txnId : undefined),
      (txnId) => to.transactions.add(txnId),
    ),
  };
}

/** Writes each item the target does not hold yet (`held` finds it there), counting both. */
async function copyEach<T>(
  items: Iterable<T> | AsyncIterable<T>,
  held: (item: T) => Promise<unknown>,
  write: (item: T) => Promise<void>,
): Promise<CopyCount> {
  let copied = 0;
  let present = 0;
  for await (const item of items) {
    if ((await held(item)) !== undefined) {
      present += 1;
    } else {
      await write(item);
      copied += 1;
    }
  }
  return { copied, present };
}
