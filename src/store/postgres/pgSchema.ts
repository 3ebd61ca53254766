import type pg from 'pg';
import { StoreOpenError } from '../store.js';
import { inTransaction } from './pgConnection.js';

/**
 * The schema, one migration per version, applied in order and never edited once released: a change is a new entry.
 * The version lives in regservice_schema (one row).
 */
export const MIGRATIONS: readonly (readonly string[])[] = [
  [
    `CREATE TABLE regservice_nodes (
       localpart text PRIMARY KEY,
       user_id text NOT NULL,
       displayname text NOT NULL,
       registered_at timestamptz NOT NULL,
       last_seen timestamptz,
       answered boolean NOT NULL DEFAULT true
     )`,
    `CREATE TABLE regservice_pending (
       localpart text PRIMARY KEY,
       user_id text NOT NULL,
       displayname text NOT NULL,
       started_at timestamptz NOT NULL,
       holder text NOT NULL,
       lease_until timestamptz NOT NULL
     )`,
    `CREATE TABLE regservice_transactions (
       txn_id text PRIMARY KEY,
       seq bigserial NOT NULL,
       seen_at timestamptz NOT NULL DEFAULT now()
     )`,
    `CREATE INDEX regservice_transactions_seq ON regservice_transactions (seq)`,
    `CREATE TABLE regservice_rate_limits (
       key varchar(255) PRIMARY KEY,
       points integer NOT NULL DEFAULT 0,
       expire bigint
     )`,
  ],
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Any constant: every gate takes the same advisory lock, so one migrates while the others wait. */
const MIGRATION_LOCK = 0x7265_6773;

const VERSION_TABLE = 'CREATE TABLE IF NOT EXISTS regservice_schema (version integer NOT NULL)';

function newerSchema(found: number): StoreOpenError {
  return new StoreOpenError(
    'schema',
    `the database's schema is version ${found}, newer than this matrix-regservice knows (${SCHEMA_VERSION}): ` +
      'a newer version migrated it; upgrade this one, or point it at another database',
  );
}

/** Brings the schema up to SCHEMA_VERSION; returns the version found. Safe when several gates start at once. */
export async function migrate(pool: pg.Pool): Promise<number> {
  try {
    return await inTransaction(pool, async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await client.query(VERSION_TABLE);
      const rows = (await client.query<{ version: number }>('SELECT version FROM regservice_schema')).rows;
      const found = rows[0]?.version ?? 0;
      if (found > SCHEMA_VERSION) throw newerSchema(found);
      for (let version = found + 1; version <= SCHEMA_VERSION; version += 1) {
        for (const statement of MIGRATIONS[version - 1] ?? []) await client.query(statement);
      }
      if (rows.length === 0) await client.query('INSERT INTO regservice_schema (version) VALUES ($1)', [SCHEMA_VERSION]);
      else await client.query('UPDATE regservice_schema SET version = $1', [SCHEMA_VERSION]);
      return found;
    });
  } catch (error) {
    if (error instanceof StoreOpenError) throw error;
    throw new StoreOpenError('unavailable', `cannot migrate the database's schema: ${(error as Error).message}`);
  }
}

/** For commands that only read: the schema must be exactly this version's, and they never change it. */
export async function requireCurrentSchema(pool: pg.Pool): Promise<void> {
  let found: number;
  try {
    const exists = await pool.query<{ present: boolean }>("SELECT to_regclass('regservice_schema') IS NOT NULL AS present");
    const versions =
      exists.rows[0]?.present === true ? await pool.query<{ version: number }>('SELECT version FROM regservice_schema') : undefined;
    found = versions?.rows[0]?.version ?? 0;
  } catch (error) {
    throw new StoreOpenError('unavailable', `cannot read the database's schema version: ${(error as Error).message}`);
  }
  if (found > SCHEMA_VERSION) throw newerSchema(found);
  if (found === 0) {
    throw new StoreOpenError(
      'missing',
      'the database has no matrix-regservice tables: is --database right? (the service creates them when it first starts)',
    );
  }
  if (found < SCHEMA_VERSION) {
    throw new StoreOpenError(
      'schema',
      `the database's schema is version ${found}, older than this matrix-regservice's ${SCHEMA_VERSION}: start the service once (it migrates), then run this again`,
    );
  }
}
