import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { Store } from '../store.js';
import { describeDatabaseUrl } from '../../config/databaseUrl.js';
import { openPool, query, type PostgresOptions } from './pgConnection.js';
import { createPgNodeStore } from './pgNodeStore.js';
import { createPgRateLimiter } from './pgRateLimiter.js';
import { createPgCeilingCounter } from './pgCeilingCounter.js';
import { startLimitCleanup } from './pgLimitTable.js';
import { migrate, requireCurrentSchema } from './pgSchema.js';
import { createPgTransactionLog } from './pgTransactionLog.js';

export interface PgStoreOptions extends PostgresOptions {
  /** How long a pending entry's lease lasts: a registration's homeserver call must end within it. */
  readonly leaseMs: number;
  /** True for the service (creates and migrates the schema); false for commands that only read (they never migrate). */
  readonly migrate: boolean;
}

/** The state in a PostgreSQL database that several gates share. */
export async function openPgStore(options: PgStoreOptions): Promise<Store> {
  const pool = await openPool(options);
  try {
    if (options.migrate) await migrate(pool);
    else await requireCurrentSchema(pool);
  } catch (error) {
    await pool.end();
    throw error;
  }
  return pgStoreOver(pool, options);
}

function pgStoreOver(pool: pg.Pool, options: PgStoreOptions): Store {
  const stopCleanup = startLimitCleanup(pool);
  return {
    description: `postgresql ${describeDatabaseUrl(options.url)}`,
    // A holder per run: a gate that restarts does not inherit its earlier run's leases, they expire.
    nodes: createPgNodeStore(pool, { holder: randomUUID(), leaseMs: options.leaseMs }),
    transactions: createPgTransactionLog(pool),
    createRateLimiter: (limit) => createPgRateLimiter(pool, limit),
    createCeilingCounter: (limit) => createPgCeilingCounter(pool, limit),
    check: async () => {
      await query(pool, 'SELECT 1');
    },
    gates: {
      async announce(gate, settings) {
        // Made when first needed, not by a schema migration: gates of an older version keep running on the database.
        await query(
          pool,
          'CREATE TABLE IF NOT EXISTS regservice_gates (gate text PRIMARY KEY, settings jsonb NOT NULL, seen timestamptz NOT NULL DEFAULT now())',
        );
        await query(
          pool,
          'INSERT INTO regservice_gates (gate, settings, seen) VALUES ($1, $2, now()) ON CONFLICT (gate) DO UPDATE SET settings = $2, seen = now()',
          [gate, JSON.stringify(settings)],
        );
        const { rows } = await query<{ gate: string; settings: Record<string, string> }>(
          pool,
          "SELECT gate, settings FROM regservice_gates WHERE gate <> $1 AND seen > now() - interval '1 day' ORDER BY gate",
          [gate],
        );
        return rows;
      },
      async leave(gate) {
        await query(pool, 'DELETE FROM regservice_gates WHERE gate = $1', [gate]);
      },
    },
    close: () => {
      stopCleanup();
      return pool.end();
    },
  };
}
