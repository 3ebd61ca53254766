import type { NodeRecord, NodeStore, PendingClaim, PendingRegistration } from '../nodeStore.js';
import type { Sublevel } from './sublevel.js';

/** A pending entry as LevelDB keeps it: the entry, its lease's holder and end (ms since the epoch). */
interface StoredPending extends PendingRegistration {
  readonly holder?: string;
  readonly leaseUntil?: number;
}

function entryOf(stored: StoredPending): PendingRegistration {
  const { localpart, userId, displayname, startedAt } = stored;
  return { localpart, userId, displayname, startedAt };
}

export interface LevelNodeStoreOptions {
  /** This store instance: one process's run. */
  readonly holder: string;
  readonly leaseMs: number;
  readonly now?: () => number;
}

/**
 * Nodes and pending entries in two sublevels. LevelDB admits one process, so a lease held by an earlier run is over:
 * only this run's own live leases keep an entry from being reconciled.
 */
export function createLevelNodeStore(nodes: Sublevel, pending: Sublevel, options: LevelNodeStoreOptions): NodeStore {
  const now = options.now ?? Date.now;
  const get = async (localpart: string): Promise<NodeRecord | undefined> => (await nodes.get(localpart)) as NodeRecord | undefined;
  const getStored = async (localpart: string): Promise<StoredPending | undefined> =>
    (await pending.get(localpart)) as StoredPending | undefined;
  const liveOwnLease = (stored: StoredPending): boolean => stored.holder === options.holder && (stored.leaseUntil ?? 0) > now();
  const allPending = async (): Promise<StoredPending[]> => {
    const entries: StoredPending[] = [];
    for await (const value of pending.values()) entries.push(value as StoredPending);
    return entries;
  };
  return {
    leaseMs: options.leaseMs,
    get,
    put: (record) => nodes.put(record.localpart, record),
    async touch(localpart, when) {
      const record = await get(localpart);
      if (record === undefined) return false;
      if (record.lastSeen === undefined || record.lastSeen < when) await nodes.put(localpart, { ...record, lastSeen: when });
      return true;
    },
    async getPending(localpart) {
      const stored = await getStored(localpart);
      return stored === undefined ? undefined : entryOf(stored);
    },
    async claimPending(entry): Promise<PendingClaim> {
      const interrupted = (await getStored(entry.localpart)) !== undefined;
      const stored: StoredPending = { ...entryOf(entry), holder: options.holder, leaseUntil: now() + options.leaseMs };
      await pending.put(entry.localpart, stored);
      return { claimed: true, interrupted };
    },
    async renewPending(localpart) {
      const stored = await getStored(localpart);
      if (stored?.holder !== options.holder) return false;
      await pending.put(localpart, { ...stored, leaseUntil: now() + options.leaseMs });
      return true;
    },
    deletePending: (localpart) => pending.del(localpart),
    async confirm(record) {
      await nodes.db.batch([
        { type: 'put', sublevel: nodes, key: record.localpart, value: record },
        { type: 'del', sublevel: pending, key: record.localpart },
      ]);
    },
    async markUnanswered(localparts) {
      const records = (await nodes.getMany([...localparts])) as (NodeRecord | undefined)[];
      const recorded = records.filter((record): record is NodeRecord => record !== undefined);
      if (recorded.length === 0) return;
      await nodes.batch(recorded.map((record) => ({ type: 'put', key: record.localpart, value: { ...record, answered: false } })));
    },
    async *list() {
      for await (const value of nodes.values()) yield value as NodeRecord;
    },
    listPending: async () => (await allPending()).map(entryOf),
    listReconcilable: async () => (await allPending()).filter((stored) => !liveOwnLease(stored)).map(entryOf),
  };
}
