import type pg from 'pg';
import { storeRetryLater } from '../../protocol/matrixError.js';
import { ALLOWED, WINDOW_MS, type RateLimitDecision, type RateLimiter } from '../rateLimiter.js';
import { query } from './pgConnection.js';

/** The table the schema's first migration creates: key, points used, expire (the window's end, ms since the epoch). */
export const RATE_LIMIT_TABLE = 'regservice_rate_limits';

/** Keys in one statement at most. */
const MAX_BATCH = 500;
/** Rows whose window ended are deleted this often, so a flood from ever-new addresses does not grow the table for ever. */
const CLEANUP_EVERY_MS = 60_000;

/**
 * Charges every key of the batch in one statement: `$1` keys, `$2` how many requests each, `$3` now (ms). A window that
 * has ended starts again; the answer is each key's count after this batch and its window's end.
 */
const CHARGE = `INSERT INTO ${RATE_LIMIT_TABLE} AS limits (key, points, expire)
  SELECT key, points, $3::bigint + ${WINDOW_MS} FROM unnest($1::text[], $2::int[]) AS charged(key, points)
  ON CONFLICT (key) DO UPDATE SET
    points = CASE WHEN limits.expire <= $3::bigint THEN EXCLUDED.points ELSE limits.points + EXCLUDED.points END,
    expire = CASE WHEN limits.expire <= $3::bigint THEN EXCLUDED.expire ELSE limits.expire END
  RETURNING key, points, expire`;

interface Waiting {
  readonly resolve: (decision: RateLimitDecision) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * An allowance per minute counted in PostgreSQL, so every gate sharing the database charges a client the same
 * allowance. Requests that arrive in one turn of the event loop are charged in one statement: under a flood that is
 * one round trip for hundreds of clients. While the database is down nothing can be counted: 503, like every request.
 */
export function createPgRateLimiter(pool: pg.Pool, name: string, pointsPerMinute: number): RateLimiter {
  let batch = new Map<string, Waiting[]>();
  let scheduled = false;

  async function charge(waiting: Map<string, Waiting[]>): Promise<void> {
    const keys = [...waiting.keys()];
    const counts = keys.map((key) => waiting.get(key)?.length ?? 0);
    const now = Date.now();
    try {
      const { rows } = await query<{ key: string; points: number; expire: string }>(pool, CHARGE, [keys, counts, now]);
      for (const row of rows) {
        const waiters = waiting.get(row.key) ?? [];
        // The batch's requests for one key were counted last, in order: the first of them is points - n + 1.
        const first = row.points - waiters.length + 1;
        const retryAfterMs = Math.max(1, Number(row.expire) - now);
        waiters.forEach((waiter, index) => waiter.resolve(first + index <= pointsPerMinute ? ALLOWED : { allowed: false, retryAfterMs }));
        waiting.delete(row.key);
      }
      const uncounted = storeRetryLater('the rate limit could not be counted; retry later', 1000);
      for (const waiters of waiting.values()) for (const waiter of waiters) waiter.reject(uncounted);
    } catch (error) {
      // query() has made a failure a retry may cure a 503 already.
      for (const waiters of waiting.values()) for (const waiter of waiters) waiter.reject(error);
    }
  }

  function flush(): void {
    scheduled = false;
    const full = batch;
    batch = new Map();
    let part = new Map<string, Waiting[]>();
    for (const [key, waiters] of full) {
      part.set(key, waiters);
      if (part.size === MAX_BATCH) {
        void charge(part);
        part = new Map();
      }
    }
    if (part.size > 0) void charge(part);
  }

  const cleanup = setInterval(() => {
    query(pool, `DELETE FROM ${RATE_LIMIT_TABLE} WHERE expire <= $1`, [Date.now()]).catch(() => undefined);
  }, CLEANUP_EVERY_MS);
  cleanup.unref();

  return {
    consume(key) {
      return new Promise<RateLimitDecision>((resolve, reject) => {
        const stored = `${name}:${key}`;
        const waiters = batch.get(stored);
        if (waiters === undefined) batch.set(stored, [{ resolve, reject }]);
        else waiters.push({ resolve, reject });
        if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      });
    },
  };
}
