import type pg from 'pg';
import { RateLimiterPostgres, RateLimiterRes } from 'rate-limiter-flexible';
import { storeRetryLater } from '../../protocol/matrixError.js';
import { ALLOWED, WINDOW_MS, type RateLimiter } from '../rateLimiter.js';

/** The table the schema's first migration creates, in rate-limiter-flexible's layout. */
export const RATE_LIMIT_TABLE = 'regservice_rate_limits';

/**
 * An allowance per minute counted in PostgreSQL (rate-limiter-flexible), so every gate sharing the database charges
 * the same client the same allowance. While the database is down the limiter cannot count: 503, like every request.
 */
export function createPgRateLimiter(pool: pg.Pool, name: string, pointsPerMinute: number): RateLimiter {
  const limiter = new RateLimiterPostgres({
    storeClient: pool,
    storeType: 'pool',
    tableName: RATE_LIMIT_TABLE,
    tableCreated: true,
    keyPrefix: name,
    points: pointsPerMinute,
    duration: WINDOW_MS / 1000,
  });
  return {
    async consume(key) {
      try {
        await limiter.consume(key);
        return ALLOWED;
      } catch (outcome) {
        if (outcome instanceof RateLimiterRes) return { allowed: false, retryAfterMs: Math.max(1, outcome.msBeforeNext) };
        throw storeRetryLater('the registry database is unavailable; retry later', 5000);
      }
    },
  };
}
