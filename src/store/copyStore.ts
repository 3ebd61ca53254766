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
  let nodes = { copied: 0, present: 0 };
  for await (const record of from.nodes.list()) {
    if ((await to.nodes.get(record.localpart)) !== undefined) {
      nodes = { ...nodes, present: nodes.present + 1 };
    } else {
      await to.nodes.put(record);
      nodes = { ...nodes, copied: nodes.copied + 1 };
    }
  }
  let pending = { copied: 0, present: 0 };
  for (const entry of await from.nodes.listPending()) {
    if ((await to.nodes.get(entry.localpart)) !== undefined || (await to.nodes.getPending(entry.localpart)) !== undefined) {
      pending = { ...pending, present: pending.present + 1 };
    } else {
      await to.nodes.claimPending(entry);
      pending = { ...pending, copied: pending.copied + 1 };
    }
  }
  let transactions = { copied: 0, present: 0 };
  for (const txnId of await from.transactions.ids()) {
    if (await to.transactions.has(txnId)) {
      transactions = { ...transactions, present: transactions.present + 1 };
    } else {
      await to.transactions.add(txnId);
      transactions = { ...transactions, copied: transactions.copied + 1 };
    }
  }
  return { nodes, pending, transactions };
}
