import type { Sublevel } from './sublevel.js';

/** One registered node, written after the homeserver confirmed its account. */
export interface NodeRecord {
  readonly localpart: string;
  readonly userId: string;
  readonly displayname: string;
  /** ISO 8601 time of the registration. */
  readonly registeredAt: string;
  /** ISO 8601 time of the node's latest event the homeserver sent us. */
  readonly lastSeen?: string;
  /**
   * False when the account was confirmed by reconciling an interrupted registration: the node never
   * got its answer, so its next correctly signed request is answered with success once.
   */
  readonly answered?: boolean;
}

/** A registration whose homeserver call started but whose outcome is not known yet. */
export interface PendingRegistration {
  readonly localpart: string;
  readonly userId: string;
  readonly displayname: string;
  readonly startedAt: string;
}

export interface NodeStore {
  get(localpart: string): Promise<NodeRecord | undefined>;
  put(record: NodeRecord): Promise<void>;
  /** Moves lastSeen forward to `when` for a recorded node; false when the node is not recorded. */
  touch(localpart: string, when: string): Promise<boolean>;
  getPending(localpart: string): Promise<PendingRegistration | undefined>;
  /** Written before the homeserver is called, so a crash leaves a trace to reconcile. */
  putPending(pending: PendingRegistration): Promise<void>;
  deletePending(localpart: string): Promise<void>;
  /** Records the node and drops its pending entry in one atomic write. */
  confirm(record: NodeRecord): Promise<void>;
  listPending(): Promise<PendingRegistration[]>;
  /** Every recorded node, in address order. */
  list(): AsyncIterable<NodeRecord>;
}

export function createNodeStore(nodes: Sublevel, pending: Sublevel): NodeStore {
  const get = async (localpart: string): Promise<NodeRecord | undefined> => (await nodes.get(localpart)) as NodeRecord | undefined;
  return {
    get,
    put: (record) => nodes.put(record.localpart, record),
    async touch(localpart, when) {
      const record = await get(localpart);
      if (record === undefined) return false;
      if (record.lastSeen === undefined || record.lastSeen < when) await nodes.put(localpart, { ...record, lastSeen: when });
      return true;
    },
    getPending: async (localpart) => (await pending.get(localpart)) as PendingRegistration | undefined,
    putPending: (entry) => pending.put(entry.localpart, entry),
    deletePending: (localpart) => pending.del(localpart),
    async confirm(record) {
      await nodes.db.batch([
        { type: 'put', sublevel: nodes, key: record.localpart, value: record },
        { type: 'del', sublevel: pending, key: record.localpart },
      ]);
    },
    async *list() {
      for await (const value of nodes.values()) yield value as NodeRecord;
    },
    async listPending() {
      const entries: PendingRegistration[] = [];
      for await (const value of pending.values()) entries.push(value as PendingRegistration);
      return entries;
    },
  };
}
