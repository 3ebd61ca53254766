import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';

export type RateLimitDecision = { readonly allowed: true } | { readonly allowed: false; readonly retryAfterMs: number };

/** Counts requests per key against an allowance per minute; held only by the primary process. */
export interface RateLimiter {
  consume(key: string): Promise<RateLimitDecision>;
}

const ALLOWED: RateLimitDecision = { allowed: true };

/** An allowance of `pointsPerMinute` per key, in this process's memory (rate-limiter-flexible). */
export function createMemoryRateLimiter(pointsPerMinute: number): RateLimiter {
  const memory = new RateLimiterMemory({ points: pointsPerMinute, duration: 60 });
  return {
    async consume(key) {
      try {
        await memory.consume(key);
        return ALLOWED;
      } catch (rejection) {
        if (!(rejection instanceof RateLimiterRes)) throw rejection;
        return { allowed: false, retryAfterMs: rejection.msBeforeNext };
      }
    },
  };
}
