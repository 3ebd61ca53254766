import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Level } from 'level';

/** One registered node, written after the homeserver confirmed its account. */
export interface NodeRecord {
  readonly localpart: string;
  readonly userId: string;
  readonly displayname: string;
  /** ISO 8601 time of the registration. */
  readonly registeredAt: string;
}

export interface NodeStore {
  get(localpart: string): Promise<NodeRecord | undefined>;
  put(record: NodeRecord): Promise<void>;
  close(): Promise<void>;
}

export class StoreOpenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreOpenError';
  }
}

export const STORE_DIRECTORY = 'regservice.leveldb';

function openFailure(path: string, error: unknown): StoreOpenError {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code === 'LEVEL_LOCKED') {
    return new StoreOpenError(
      `the database ${path} is in use by another process (is another matrix-regservice running with this --datapath?)`,
    );
  }
  if (cause?.code === 'LEVEL_CORRUPTION') {
    return new StoreOpenError(`the database ${path} is corrupt: ${cause.message ?? 'unknown damage'}`);
  }
  return new StoreOpenError(`cannot open the database ${path}: ${cause?.message ?? (error as Error).message}`);
}

/** The LevelDB store under `datapath`; creates the directory (mode 0700) if needed. */
export async function openNodeStore(datapath: string): Promise<NodeStore> {
  const path = join(datapath, STORE_DIRECTORY);
  try {
    mkdirSync(datapath, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new StoreOpenError(`cannot create --datapath ${datapath}: ${(error as Error).message}`);
  }
  const db = new Level<string, NodeRecord>(path, { valueEncoding: 'json' });
  try {
    await db.open();
  } catch (error) {
    throw openFailure(path, error);
  }
  const nodes = db.sublevel<string, NodeRecord>('nodes', { valueEncoding: 'json' });
  return {
    get: (localpart) => nodes.get(localpart),
    put: (record) => nodes.put(record.localpart, record),
    close: () => db.close(),
  };
}
