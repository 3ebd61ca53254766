import type { CeilingCounter } from './ceilingCounter.js';
import { keyCache } from './keyCache.js';
import { MAX_REMEMBERED_KEYS, type LimitSpec } from './rateLimiter.js';

interface Window {
  count: number;
  /** When it ends (ms since the epoch): also what identifies it to a giveBack. */
  readonly endsAt: number;
}

/**
 * A ceiling counted in this process's memory: a fixed window from a key's first unit, in a bounded LRU cache (the
 * least recently used keys are forgotten past `maxKeys`, as the request limits are).
 */
export function createMemoryCeilingCounter(
  limit: LimitSpec,
  options: { readonly maxKeys?: number; readonly now?: () => number } = {},
): CeilingCounter {
  const now = options.now ?? Date.now;
  const windows = keyCache<Window>(options.maxKeys ?? MAX_REMEMBERED_KEYS);
  return {
    async take(key) {
      const at = now();
      let window = windows.get(key);
      if (window === undefined || window.endsAt <= at) {
        window = { count: 0, endsAt: at + limit.windowMs };
        windows.set(key, window);
      }
      if (window.count >= limit.points) return { taken: false, retryAfterMs: Math.max(1, window.endsAt - at) };
      window.count += 1;
      return { taken: true, window: window.endsAt };
    },
    async giveBack(key, endsAt) {
      const window = windows.get(key);
      if (window !== undefined && window.endsAt === endsAt && window.count > 0) window.count -= 1;
    },
  };
}
