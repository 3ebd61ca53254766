import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore, StoreOpenError, STORE_DIRECTORY, type Store } from './database.js';

export interface StoreForReading {
  readonly store: Store;
  /** True when the service held the database and a snapshot copy was opened instead. */
  readonly snapshot: boolean;
  close(): Promise<void>;
}

/**
 * Opens the database for reading even while the service runs: LevelDB allows one process, so when
 * it is locked a copy of its files (all but LOCK) is opened instead; LevelDB recovers the copy's log.
 */
export async function openStoreForReading(datapath: string): Promise<StoreForReading> {
  try {
    const store = await openStore(datapath, { create: false });
    return { store, snapshot: false, close: () => store.close() };
  } catch (error) {
    if (!(error instanceof StoreOpenError) || error.reason !== 'locked') throw error;
  }
  const copy = mkdtempSync(join(tmpdir(), 'regservice-snapshot-'));
  cpSync(join(datapath, STORE_DIRECTORY), join(copy, STORE_DIRECTORY), {
    recursive: true,
    filter: (source) => !source.endsWith('/LOCK'),
  });
  const store = await openStore(copy);
  return {
    store,
    snapshot: true,
    close: async () => {
      await store.close();
      rmSync(copy, { recursive: true, force: true });
    },
  };
}
