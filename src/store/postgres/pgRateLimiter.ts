import type pg from 'pg';
import { storeRetryLater } from '../../protocol/matrixError.js';
import { ALLOWED, MAX_REMEMBERED_KEYS, type LimitSpec, type RateLimitDecision, type RateLimiter } from '../rateLimiter.js';
import { query } from './pgConnection.js';

/** The table the schema's first migration creates: key, points used, expire (the window's end, ms since the epoch). */
export const RATE_LIMIT_TABLE = 'regservice_rate_limits';

/** Keys in one statement at most. */
const MAX_BATCH = 500;
/** Rows whose window ended are deleted this often, so a flood from ever-new addresses does not grow the table for ever. */
const CLEANUP_EVERY_MS = 60_000;
/** Rows one cleanup or eviction statement deletes at most, so that none holds its locks long. */
const DELETE_AT_MOST = 10_000;
/** Past the cap, a limit's rows are cut down to this share of it, so that eviction runs once per many new clients. */
const EVICT_DOWN_TO = 0.9;

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

interface Waiting {
  readonly resolve: (decision: RateLimitDecision) => void;
  readonly reject: (error: unknown) => void;
}

export interface PgRateLimiterOptions {
  /** Clients this limit keeps rows for at most (within a window too); the oldest windows go first past it. */
  readonly maxKeys?: number;
}

/**
 * An allowance per minute counted in PostgreSQL, so every gate sharing the database charges a client the same
 * allowance. Requests that arrive in one turn of the event loop are charged in one statement: under a flood that is
 * one round trip for hundreds of clients. While the database is down nothing can be counted: 503, like every request.
 * Like the in-memory limiter, a limit keeps at most `maxKeys` clients, however many new ones a window brings.
 */
/** One use given back to a key's current window, never below zero. */
const REFUND = `UPDATE ${RATE_LIMIT_TABLE} SET points = points - 1 WHERE key = $1 AND points > 0 AND expire > $2`;

export function createPgRateLimiter(pool: pg.Pool, limit: LimitSpec, options: PgRateLimiterOptions = {}): RateLimiter {
  const { name, points: pointsPerWindow, windowMs } = limit;
  const maxKeys = options.maxKeys ?? MAX_REMEMBERED_KEYS;
  const prefix = `${name}:`;
  const pattern = `${prefix.replace(/[\\%_]/g, (char) => `\\${char}`)}%`;
  let batch = new Map<string, Waiting[]>();
  let scheduled = false;
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
      // The next charge past the cap tries again.
    } finally {
      evicting = false;
    }
  }

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
      for (const row of charged) {
        if (row.inserted) rows += 1;
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
    if (rows > maxKeys) void evictPastCap();
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
    query(pool, CLEANUP, [Date.now(), DELETE_AT_MOST]).catch(() => undefined);
  }, CLEANUP_EVERY_MS);
  cleanup.unref();

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
    async refund(key) {
      await query(pool, REFUND, [`${prefix}${key}`, Date.now()]);
    },
  };
}
