import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Level } from 'level';
import { randomUUID } from 'node:crypto';
import { createMemoryRateLimiter } from '../memoryRateLimiter.js';
import { createMemoryCeilingCounter } from '../memoryCeilingCounter.js';
import { StoreOpenError, type Store } from '../store.js';
import { createLevelNodeStore } from './levelNodeStore.js';
import { createLevelTransactionLog } from './levelTransactionLog.js';
import { openSublevel } from './sublevel.js';
import { createGroupCommit } from './groupCommit.js';

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

export interface LevelStoreOptions {
  /** False for read-only commands: they must not turn a mistyped path into an empty database. */
  readonly create?: boolean;
  /** How long a pending entry's lease lasts (twice the homeserver timeout by default). */
  readonly leaseMs?: number;
}

/**
 * LevelDB maps the tables it has open into the process, and every page a compaction reads stays in its RSS while the
 * table is open: with LevelDB's defaults (1,000 open tables of 2 MB) the primary of a million nodes passed 140 MB.
 * At most 32 tables of 1 MB, a 2 MB write buffer and a 2 MB block cache keep it under 100 MB (BENCHMARKS.md), at no
 * measured cost: bloom filters answer most lookups of new nodes, and smaller tables make smaller compactions.
 */
const MEMORY_BOUNDED = { maxOpenFiles: 32, maxFileSize: 1 << 20, writeBufferSize: 2 << 20, cacheSize: 2 << 20 } as const;

/** Leases only matter within this process's run here; a default for commands that never register. */
const DEFAULT_LEASE_MS = 60_000;

/** Opens the LevelDB database under `datapath`, creating it (directory mode 0700) unless `create` is false. */
export async function openLevelStore(datapath: string, options: LevelStoreOptions = {}): Promise<Store> {
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
  const db = new Level<string, unknown>(path, { valueEncoding: 'json', ...MEMORY_BOUNDED });
  try {
    await db.open();
  } catch (error) {
    throw openFailure(path, error);
  }
  return {
    description: `leveldb ${path}`,
    nodes: createLevelNodeStore(openSublevel(db, 'nodes'), openSublevel(db, 'pending'), {
      holder: randomUUID(),
      write: createGroupCommit(db),
      leaseMs: options.leaseMs ?? DEFAULT_LEASE_MS,
    }),
    transactions: await createLevelTransactionLog(openSublevel(db, 'transactions')),
    createRateLimiter: (limit) => createMemoryRateLimiter(limit.points, { windowMs: limit.windowMs }),
    createCeilingCounter: (limit) => createMemoryCeilingCounter(limit),
    check: async () => {
      if (db.status !== 'open') throw new Error(`the database ${path} is ${db.status}`);
    },
    close: () => db.close(),
  };
}
