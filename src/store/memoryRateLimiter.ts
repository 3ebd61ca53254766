import { LRUCache } from 'lru-cache';
import { ALLOWED, MAX_REMEMBERED_KEYS, WINDOW_MS, type RateLimiter } from './rateLimiter.js';

/**
 * An allowance of `pointsPerMinute` per key in this process's memory: a fixed one-minute window from a key's first
 * request, in a bounded LRU cache with no timer per key.
 */
export function createMemoryRateLimiter(
  pointsPerMinute: number,
  options: { readonly maxKeys?: number; readonly now?: () => number } = {},
): RateLimiter {
  const used = new LRUCache<string, number>({
    max: options.maxKeys ?? MAX_REMEMBERED_KEYS,
    ttl: WINDOW_MS,
    noUpdateTTL: true,
    ttlAutopurge: false,
    ...(options.now === undefined ? {} : { perf: { now: options.now }, ttlResolution: 0 }),
  });
  return {
    async consume(key) {
      const count = (used.get(key) ?? 0) + 1;
      used.set(key, count);
      return count <= pointsPerMinute ? ALLOWED : { allowed: false, retryAfterMs: Math.max(1, used.getRemainingTTL(key)) };
    },
  };
}
