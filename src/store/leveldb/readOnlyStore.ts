import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StoreForReading } from '../openStore.js';
import { StoreOpenError } from '../store.js';
import { openLevelStore, STORE_DIRECTORY } from './levelStore.js';

/**
 * Opens the database for reading even while the service runs: LevelDB allows one process, so when
 * it is locked a copy of its files (all but LOCK) is opened instead; LevelDB recovers the copy's log.
 */
export async function openLevelStoreForReading(datapath: string): Promise<StoreForReading> {
  try {
    const store = await openLevelStore(datapath, { create: false });
    return { store, snapshot: false, close: () => store.close() };
  } catch (error) {
    if (!(error instanceof StoreOpenError) || error.reason !== 'locked') throw error;
  }
  const copy = mkdtempSync(join(tmpdir(), 'regservice-snapshot-'));
  cpSync(join(datapath, STORE_DIRECTORY), join(copy, STORE_DIRECTORY), {
    recursive: true,
    filter: (source) => !source.endsWith('/LOCK'),
  });
  const store = await openLevelStore(copy);
  return {
    store,
    snapshot: true,
    close: async () => {
      await store.close();
      rmSync(copy, { recursive: true, force: true });
    },
  };
}
