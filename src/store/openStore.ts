import type { Settings } from '../config/settings.js';
import type { Store } from './store.js';

// Each store's modules are loaded only when that store is opened: a LevelDB gate never carries node-postgres, nor a
// PostgreSQL gate LevelDB's addon.
const levelDb = () => import('./leveldb/levelStore.js');
const postgres = () => import('./postgres/pgStore.js');

export type StoreSettings = Pick<Settings, 'datapath' | 'database' | 'databasePassword' | 'databasePool' | 'pendingLeaseMs'>;

/** The service's store: PostgreSQL when --database is given (created and migrated), else LevelDB under --datapath. */
export async function openServiceStore(settings: StoreSettings, onIdleError?: (error: Error) => void): Promise<Store> {
  if (settings.database === undefined) return (await levelDb()).openLevelStore(settings.datapath, { leaseMs: settings.pendingLeaseMs });
  return (await postgres()).openPgStore({
    url: settings.database,
    password: settings.databasePassword,
    poolSize: settings.databasePool,
    leaseMs: settings.pendingLeaseMs,
    migrate: true,
    ...(onIdleError === undefined ? {} : { onIdleError }),
  });
}

export interface StoreForReading {
  readonly store: Store;
  /** True when the service held the LevelDB database and a snapshot copy was opened instead. */
  readonly snapshot: boolean;
  close(): Promise<void>;
}

/** For commands that read (users, doctor): never creates a database, never migrates one. */
export async function openStoreForReading(settings: StoreSettings): Promise<StoreForReading> {
  if (settings.database === undefined) return (await import('./leveldb/readOnlyStore.js')).openLevelStoreForReading(settings.datapath);
  const store = await (
    await postgres()
  ).openPgStore({
    url: settings.database,
    password: settings.databasePassword,
    poolSize: 1,
    leaseMs: settings.pendingLeaseMs,
    migrate: false,
  });
  return { store, snapshot: false, close: () => store.close() };
}
