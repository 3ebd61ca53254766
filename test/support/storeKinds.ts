import { openLevelStore } from '../../src/store/leveldb/levelStore.js';
import { openPgStore } from '../../src/store/postgres/pgStore.js';
import type { Store } from '../../src/store/store.js';
import { startPostgres, type PostgresServer } from './postgres.js';
import { tempDir } from './tempDir.js';

export interface StoreOptions {
  readonly leaseMs?: number;
}

/** One implementation of the store, for behaviour tests that run against each. */
export interface StoreKind {
  readonly name: 'LevelDB' | 'PostgreSQL';
  /** A new, empty store (a LevelDB directory, or a new PostgreSQL database). */
  fresh(options?: StoreOptions): Promise<Store>;
  /**
   * The state of `store` as a later run sees it (another holder of leases): LevelDB, which admits one process, closes
   * and reopens it; PostgreSQL opens a second store on the same database, as another gate would.
   */
  laterRun(store: Store, options?: StoreOptions): Promise<Store>;
}

const DEFAULT_LEASE_MS = 60_000;
const opened: Store[] = [];
const locations = new WeakMap<Store, string>();

/** Closing twice is allowed here: tests close what they check, and closeStores closes the rest. */
function tracked(store: Store, location: string): Store {
  let closing: Promise<void> | undefined;
  const once: Store = { ...store, close: () => (closing ??= store.close()) };
  opened.push(once);
  locations.set(once, location);
  return once;
}

function locationOf(store: Store): string {
  const location = locations.get(store);
  if (location === undefined) throw new Error('not a store these helpers opened');
  return location;
}

export const levelDb: StoreKind = {
  name: 'LevelDB',
  async fresh(options = {}) {
    const datapath = tempDir('regservice-store-');
    return tracked(await openLevelStore(datapath, { leaseMs: options.leaseMs ?? DEFAULT_LEASE_MS }), datapath);
  },
  async laterRun(store, options = {}) {
    const datapath = locationOf(store);
    await store.close();
    return tracked(await openLevelStore(datapath, { leaseMs: options.leaseMs ?? DEFAULT_LEASE_MS }), datapath);
  },
};

let server: Promise<PostgresServer> | undefined;
/** One real PostgreSQL server per test process, started when first needed. */
export const postgresServer = (): Promise<PostgresServer> => (server ??= startPostgres());

async function openOn(url: string, options: StoreOptions): Promise<Store> {
  const server = await postgresServer();
  const store = await openPgStore({
    url: server.withPassword(url),
    poolSize: 4,
    leaseMs: options.leaseMs ?? DEFAULT_LEASE_MS,
    migrate: true,
  });
  return tracked(store, url);
}

export const postgres: StoreKind = {
  name: 'PostgreSQL',
  async fresh(options = {}) {
    return openOn(await (await postgresServer()).createDatabase(), options);
  },
  laterRun: (store, options = {}) => openOn(locationOf(store), options),
};

export const STORE_KINDS: readonly StoreKind[] = [levelDb, postgres];

/** Closes every store these helpers opened and stops the PostgreSQL server. */
export async function closeStores(): Promise<void> {
  await Promise.all(opened.splice(0).map((store) => store.close()));
  if (server !== undefined) await (await server).stop();
  server = undefined;
}
