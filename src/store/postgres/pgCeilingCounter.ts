import type pg from 'pg';
import { storeRetryLater } from '../../protocol/matrixError.js';
import type { CeilingCounter } from '../ceilingCounter.js';
import { MAX_REMEMBERED_KEYS, type LimitSpec } from '../rateLimiter.js';
import { query } from './pgConnection.js';
import { limitRows, RATE_LIMIT_TABLE } from './pgLimitTable.js';

/**
 * Takes one unit for `$1` (the stored key) at `$2` (now, ms) in a window of `$3` ms under a ceiling of `$4`. A window
 * that has ended starts again. A full window is marked with ceiling + 1 (so the answer tells a refusal from the last
 * unit taken) and grows no further.
 */
const TAKE = `INSERT INTO ${RATE_LIMIT_TABLE} AS limits (key, points, expire) VALUES ($1, 1, $2::bigint + $3::bigint)
  ON CONFLICT (key) DO UPDATE SET
    points = CASE WHEN limits.expire <= $2::bigint THEN 1
                  WHEN limits.points < $4::int THEN limits.points + 1
                  ELSE $4::int + 1 END,
    expire = CASE WHEN limits.expire <= $2::bigint THEN EXCLUDED.expire ELSE limits.expire END
  RETURNING points, expire, (xmax = 0) AS inserted`;

/** Gives back one unit of the window ending at `$2`, if that window is still the key's; `$3` the ceiling. */
const GIVE_BACK = `UPDATE ${RATE_LIMIT_TABLE} SET points = LEAST(points, $3::int) - 1
  WHERE key = $1 AND expire = $2::bigint AND points > 0`;

/** A ceiling counted in PostgreSQL, so that every gate of the database counts the same units; rows capped as the limits. */
export function createPgCeilingCounter(pool: pg.Pool, limit: LimitSpec, options: { readonly maxKeys?: number } = {}): CeilingCounter {
  const rows = limitRows(pool, limit.name, options.maxKeys ?? MAX_REMEMBERED_KEYS);
  return {
    async take(key) {
      const now = Date.now();
      const { rows: taken } = await query<{ points: number; expire: string; inserted: boolean }>(pool, TAKE, [
        `${rows.prefix}${key}`,
        now,
        limit.windowMs,
        limit.points,
      ]);
      const row = taken[0];
      if (row === undefined) throw storeRetryLater('the ceiling could not be counted; retry later', 1000);
      if (row.inserted) rows.inserted(1);
      const endsAt = Number(row.expire);
      return row.points <= limit.points ? { taken: true, window: endsAt } : { taken: false, retryAfterMs: Math.max(1, endsAt - now) };
    },
    async giveBack(key, window) {
      await query(pool, GIVE_BACK, [`${rows.prefix}${key}`, window, limit.points]);
    },
  };
}
