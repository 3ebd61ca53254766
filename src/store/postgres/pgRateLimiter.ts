import type pg from 'pg';
import { storeRetryLater } from '../../protocol/matrixError.js';
import { ALLOWED, MAX_REMEMBERED_KEYS, type LimitSpec, type RateLimitDecision, type RateLimiter } from '../rateLimiter.js';
import { query } from './pgConnection.js';
import { limitRows, RATE_LIMIT_TABLE } from './pgLimitTable.js';

/** Keys in one statement at most. */
const MAX_BATCH = 500;

/**
 * Charges every key of the batch in one statement: `$1` keys, `$2` how many requests each, `$3` now (ms). A window that
 * has ended starts again; the answer is each key's count after this batch, its window's end, and whether its row is new.
 * The keys come sorted, and are taken in that order (WITH ORDINALITY): every statement that locks these rows locks them
 * in the same order, so two gates (or two batches of one) charging the same clients can never deadlock.
 */
const CHARGE = `INSERT INTO ${RATE_LIMIT_TABLE} AS limits (key, points, expire)
  SELECT key, points, $3::bigint + $4::bigint
    FROM unnest($1::text[], $2::int[]) WITH ORDINALITY AS charged(key, points, position) ORDER BY position
  ON CONFLICT (key) DO UPDATE SET
    points = CASE WHEN limits.expire <= $3::bigint THEN EXCLUDED.points ELSE limits.points + EXCLUDED.points END,
    expire = CASE WHEN limits.expire <= $3::bigint THEN EXCLUDED.expire ELSE limits.expire END
  RETURNING key, points, expire, (xmax = 0) AS inserted`;

interface Waiting {
  readonly resolve: (decision: RateLimitDecision) => void;
  readonly reject: (error: unknown) => void;
}

export interface PgRateLimiterOptions {
  /** Clients this limit keeps rows for at most (within a window too); the oldest windows go first past it. */
  readonly maxKeys?: number;
}

/**
 * An allowance per window (a minute for the request limits) counted in PostgreSQL, so every gate sharing the database
 * charges a client the same allowance. Requests that arrive in one turn of the event loop are charged in one statement:
 * under a flood that is one round trip for hundreds of clients. While the database is down nothing can be counted: 503,
 * like every request. Like the in-memory limiter, a limit keeps at most `maxKeys` clients, however many new ones a
 * window brings.
 */
export function createPgRateLimiter(pool: pg.Pool, limit: LimitSpec, options: PgRateLimiterOptions = {}): RateLimiter {
  const { name, points: pointsPerWindow, windowMs } = limit;
  const rows = limitRows(pool, name, options.maxKeys ?? MAX_REMEMBERED_KEYS);
  const { prefix } = rows;
  let batch = new Map<string, Waiting[]>();
  let scheduled = false;

  async function charge(waiting: Map<string, Waiting[]>): Promise<void> {
    const keys = [...waiting.keys()].sort();
    const counts = keys.map((key) => waiting.get(key)?.length ?? 0);
    const now = Date.now();
    try {
      const { rows: charged } = await query<{ key: string; points: number; expire: string; inserted: boolean }>(pool, CHARGE, [
        keys,
        counts,
        now,
        windowMs,
      ]);
      rows.inserted(charged.filter((row) => row.inserted).length);
      for (const row of charged) {
        const waiters = waiting.get(row.key) ?? [];
        // The batch's requests for one key were counted last, in order: the first of them is points - n + 1.
        const first = row.points - waiters.length + 1;
        const retryAfterMs = Math.max(1, Number(row.expire) - now);
        waiters.forEach((waiter, index) => waiter.resolve(first + index <= pointsPerWindow ? ALLOWED : { allowed: false, retryAfterMs }));
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

  return {
    consume(key) {
      return new Promise<RateLimitDecision>((resolve, reject) => {
        const stored = `${prefix}${key}`;
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
