import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Level } from 'level';
import { createNodeStore, type NodeStore } from './nodeStore.js';
import { createTransactionLog, type TransactionLog } from './transactionLog.js';
import { openSublevel } from './sublevel.js';

/** The service's state: one LevelDB database under --datapath, one sublevel per kind of record. */
export interface Store {
  readonly nodes: NodeStore;
  readonly transactions: TransactionLog;
  close(): Promise<void>;
}

export type StoreOpenFailure = 'locked' | 'corrupt' | 'missing' | 'unavailable';

export class StoreOpenError extends Error {
  /** locked: another process holds it; corrupt: damaged; missing: no database there; unavailable: anything else. */
  readonly reason: StoreOpenFailure;
  constructor(reason: StoreOpenFailure, message: string) {
    super(message);
    this.name = 'StoreOpenError';
    this.reason = reason;
  }
}

export const STORE_DIRECTORY = 'regservice.leveldb';

function openFailure(path: string, error: unknown): StoreOpenError {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code === 'LEVEL_LOCKED') {
    return new StoreOpenError(
      'locked',
      `the database ${path} is in use by another process (is another matrix-regservice running with this --datapath?)`,
    );
  }
  if (cause?.code === 'LEVEL_CORRUPTION') {
    return new StoreOpenError(
      'corrupt',
      `the database ${path} is corrupt (${cause.message ?? 'unknown damage'}): restore it from a backup, or move it away to start empty`,
    );
  }
  return new StoreOpenError('unavailable', `cannot open the database ${path}: ${cause?.message ?? (error as Error).message}`);
}

/**
 * Opens the database under `datapath`, creating it (directory mode 0700) unless `create` is false: read-only
 * commands must not turn a mistyped path into an empty database.
 */
export async function openStore(datapath: string, options: { readonly create?: boolean } = {}): Promise<Store> {
  const path = join(datapath, STORE_DIRECTORY);
  if (options.create === false) {
    if (!existsSync(path)) {
      throw new StoreOpenError(
        'missing',
        `there is no database at ${path}: is --datapath right? (the service creates it when it first starts)`,
      );
    }
  } else {
    try {
      mkdirSync(datapath, { recursive: true, mode: 0o700 });
    } catch (error) {
      throw new StoreOpenError('unavailable', `cannot create --datapath ${datapath}: ${(error as Error).message}`);
    }
  }
  const db = new Level<string, unknown>(path, { valueEncoding: 'json' });
  try {
    await db.open();
  } catch (error) {
    throw openFailure(path, error);
  }
  return {
    nodes: createNodeStore(openSublevel(db, 'nodes'), openSublevel(db, 'pending')),
    transactions: await createTransactionLog(openSublevel(db, 'transactions')),
    close: () => db.close(),
  };
}
