import type { NodeRecord, NodeStore, PendingClaim, PendingRegistration } from '../nodeStore.js';
import type { Sublevel } from './sublevel.js';
import type { LevelWrite } from './groupCommit.js';

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
  /** Every write goes through it (one batch for many registrations' writes). */
  readonly write: (writes: readonly LevelWrite[]) => Promise<void>;
  readonly leaseMs: number;
  readonly now?: () => number;
}

/**
 * Nodes and pending entries in two sublevels. LevelDB admits one process, so a lease held by an earlier run is over:
 * only this run's own live leases keep an entry from being reconciled.
 */
export function createLevelNodeStore(nodes: Sublevel, pending: Sublevel, options: LevelNodeStoreOptions): NodeStore {
  const now = options.now ?? Date.now;
  const { write } = options;
  // Reads are synchronous: a lookup in LevelDB's memtable, cache or (bloom-filtered) tables costs a few microseconds,
  // an asynchronous one ten times that in thread-pool hops and promises. Every write is awaited before what depends on
  // it, so a read never misses a write of the same registration.
  const get = async (localpart: string): Promise<NodeRecord | undefined> => nodes.getSync(localpart) as NodeRecord | undefined;
  const getStored = (localpart: string): StoredPending | undefined => pending.getSync(localpart) as StoredPending | undefined;
  const putNode = (record: NodeRecord): LevelWrite => ({ type: 'put', sublevel: nodes, key: record.localpart, value: record });
  const putPending = (stored: StoredPending): LevelWrite => ({ type: 'put', sublevel: pending, key: stored.localpart, value: stored });
  const liveOwnLease = (stored: StoredPending): boolean => stored.holder === options.holder && (stored.leaseUntil ?? 0) > now();
  // Records being forgotten: their deletes are queued but not written yet. A mark or a last-seen time read from such a
  // record now would be written after the delete and bring the record back.
  const forgetting = new Set<string>();
  let forgettingAll = 0;
  const beingForgotten = (localpart: string): boolean => forgettingAll > 0 || forgetting.has(localpart);
  const allPending = async (): Promise<StoredPending[]> => {
    const entries: StoredPending[] = [];
    for await (const value of pending.values()) entries.push(value as StoredPending);
    return entries;
  };
  return {
    leaseMs: options.leaseMs,
    get,
    put: (record) => write([putNode(record)]),
    async touch(localpart, when) {
      const record = await get(localpart);
      if (record === undefined || beingForgotten(localpart)) return false;
      // Times, not their text: an ISO string past year 9999 ('+010000-…') sorts before every ordinary one. A stored
      // time that does not parse is replaced.
      if (record.lastSeen === undefined || !(Date.parse(record.lastSeen) >= Date.parse(when))) {
        await write([putNode({ ...record, lastSeen: when })]);
      }
      return true;
    },
    async getPending(localpart) {
      const stored = getStored(localpart);
      return stored === undefined ? undefined : entryOf(stored);
    },
    async claimPending(entry): Promise<PendingClaim> {
      const recorded = nodes.getSync(entry.localpart) as NodeRecord | undefined;
      if (recorded !== undefined) return { claimed: false, recorded };
      const interrupted = getStored(entry.localpart) !== undefined;
      await write([putPending({ ...entryOf(entry), holder: options.holder, leaseUntil: now() + options.leaseMs })]);
      return { claimed: true, interrupted };
    },
    async renewPending(localpart) {
      const stored = getStored(localpart);
      if (stored?.holder !== options.holder) return false;
      await write([putPending({ ...stored, leaseUntil: now() + options.leaseMs })]);
      return true;
    },
    deletePending: (localpart) => write([{ type: 'del', sublevel: pending, key: localpart }]),
    confirm: (record) => write([putNode(record), { type: 'del', sublevel: pending, key: record.localpart }]),
    async forget(localparts) {
      const chosen: string[] = [];
      if (localparts === 'all') forgettingAll += 1;
      else for (const localpart of localparts) forgetting.add(localpart);
      try {
        if (localparts === 'all') for await (const key of nodes.keys()) chosen.push(key);
        else for (const localpart of localparts) if ((await get(localpart)) !== undefined) chosen.push(localpart);
        if (chosen.length > 0) await write(chosen.map((key) => ({ type: 'del', sublevel: nodes, key }) as const));
      } finally {
        if (localparts === 'all') forgettingAll -= 1;
        else for (const localpart of localparts) forgetting.delete(localpart);
      }
      return chosen.length;
    },
    async markAnswered(localparts, answered) {
      const recorded = localparts.flatMap((localpart) => {
        const record = beingForgotten(localpart) ? undefined : (nodes.getSync(localpart) as NodeRecord | undefined);
        return record === undefined ? [] : [record];
      });
      if (recorded.length === 0) return;
      await write(recorded.map((record) => putNode({ ...record, answered })));
    },
    async *list() {
      for await (const value of nodes.values()) yield value as NodeRecord;
    },
    listPending: async () => (await allPending()).map(entryOf),
    listReconcilable: async () => (await allPending()).filter((stored) => !liveOwnLease(stored)).map(entryOf),
  };
}
