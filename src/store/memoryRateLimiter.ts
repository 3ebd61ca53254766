import { keyCache } from './keyCache.js';
import { ALLOWED, MAX_REMEMBERED_KEYS, WINDOW_MS, type RateLimiter } from './rateLimiter.js';

/**
 * An allowance of `points` per key and window (a minute unless given) in this process's memory: a fixed window from a
 * key's first use, in a bounded LRU cache with no timer per key.
 */
export function createMemoryRateLimiter(
  points: number,
  options: { readonly maxKeys?: number; readonly now?: () => number; readonly windowMs?: number } = {},
): RateLimiter {
  const used = keyCache<number>(options.maxKeys ?? MAX_REMEMBERED_KEYS, {
    ttl: options.windowMs ?? WINDOW_MS,
    noUpdateTTL: true,
    ttlAutopurge: false,
    ...(options.now === undefined ? {} : { perf: { now: options.now }, ttlResolution: 0 }),
  });
  return {
    async consume(key) {
      const count = (used.get(key) ?? 0) + 1;
      used.set(key, count);
      return count <= points ? ALLOWED : { allowed: false, retryAfterMs: Math.max(1, used.getRemainingTTL(key)) };
    },
  };
}
