import type { Sublevel } from './database.js';

/** One registered node, written after the homeserver confirmed its account. */
export interface NodeRecord {
  readonly localpart: string;
  readonly userId: string;
  readonly displayname: string;
  /** ISO 8601 time of the registration. */
  readonly registeredAt: string;
  /** ISO 8601 time of the node's latest event the homeserver sent us. */
  readonly lastSeen?: string;
}

export interface NodeStore {
  get(localpart: string): Promise<NodeRecord | undefined>;
  put(record: NodeRecord): Promise<void>;
  /** Moves lastSeen forward to `when` for a recorded node; false when the node is not recorded. */
  touch(localpart: string, when: string): Promise<boolean>;
}

export function createNodeStore(nodes: Sublevel): NodeStore {
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
  };
}
