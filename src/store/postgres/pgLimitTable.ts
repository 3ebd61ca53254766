import type pg from 'pg';
import { query } from './pgConnection.js';

/**
 * The table the schema's first migration creates, shared by every request limit and account ceiling: key (the limit's
 * name, a colon, its key), points used, expire (the window's end, ms since the epoch).
 */
export const RATE_LIMIT_TABLE = 'regservice_rate_limits';

/** Rows whose window ended are deleted this often, so a flood from ever-new addresses does not grow the table for ever. */
const CLEANUP_EVERY_MS = 60_000;
/** Rows one cleanup or eviction statement deletes at most, so that none holds its locks long. */
const DELETE_AT_MOST = 10_000;
/** Past the cap, a limit's rows are cut down to this share of it, so that eviction runs once per many new clients. */
const EVICT_DOWN_TO = 0.9;

/**
 * Deletes what `$1 … ` selects, taking the rows in key order and skipping any a charge holds: a cleanup never waits for
 * a charge, so it can never be part of a deadlock either.
 */
const deleteRows = (where: string, order: string): string =>
  `DELETE FROM ${RATE_LIMIT_TABLE} WHERE key IN (
     SELECT key FROM ${RATE_LIMIT_TABLE} WHERE ${where} ORDER BY ${order} LIMIT $2 FOR UPDATE SKIP LOCKED)`;

const CLEANUP = deleteRows('expire <= $1', 'key');
/** A limit's oldest windows first: `$1` its key prefix (a LIKE pattern), `$2` how many. */
const EVICT = deleteRows('key LIKE $1', 'expire, key');
const COUNT = `SELECT count(*)::int AS rows FROM ${RATE_LIMIT_TABLE} WHERE key LIKE $1`;

/** Deletes ended windows every minute, for every limit of the store at once; returns the stop. */
export function startLimitCleanup(pool: pg.Pool): () => void {
  const cleanup = setInterval(() => {
    query(pool, CLEANUP, [Date.now(), DELETE_AT_MOST]).catch(() => undefined);
  }, CLEANUP_EVERY_MS);
  cleanup.unref();
  return () => clearInterval(cleanup);
}

/** One limit's rows: its keys' prefix, and a cap on how many it keeps (the oldest windows go first past it). */
export interface LimitRows {
  /** `name:`, what the limit's keys start with in the table. */
  readonly prefix: string;
  /** Rows this gate just inserted for the limit: past the cap, the oldest windows are deleted. */
  inserted(count: number): void;
}

export function limitRows(pool: pg.Pool, name: string, maxKeys: number): LimitRows {
  const prefix = `${name}:`;
  const pattern = `${prefix.replace(/[\\%_]/g, (char) => `\\${char}`)}%`;
  /** Rows this limit has in the table, as far as this gate knows: counted when it may be past the cap. */
  let rows = 0;
  let evicting = false;

  async function evictPastCap(): Promise<void> {
    if (evicting) return;
    evicting = true;
    try {
      rows = (await query<{ rows: number }>(pool, COUNT, [pattern])).rows[0]?.rows ?? 0;
      const excess = rows - Math.floor(maxKeys * EVICT_DOWN_TO);
      if (rows > maxKeys && excess > 0) {
        for (let left = excess; left > 0; left -= DELETE_AT_MOST) {
          const deleted = (await query(pool, EVICT, [pattern, Math.min(left, DELETE_AT_MOST)])).rowCount ?? 0;
          rows -= deleted;
          if (deleted === 0) break;
        }
      }
    } catch {
      // The next insert past the cap tries again.
    } finally {
      evicting = false;
    }
  }

  return {
    prefix,
    inserted(count) {
      rows += count;
      if (rows > maxKeys) void evictPastCap();
    },
  };
}
