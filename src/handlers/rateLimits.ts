import { retryLater } from '../protocol/matrixError.js';
import { WINDOW_MS, type LimitSpec, type RateLimiter } from '../store/rateLimiter.js';

export interface RateLimitSettings {
  /** Registration requests per minute from one client (address or IPv6 network); 0 turns the limit off. */
  readonly perClientPerMinute: number;
  /** Registration requests per minute for one node address, counted once its signatures verified; 0: off. */
  readonly perNodePerMinute: number;
}

export interface RateLimits {
  /** Resolves, or throws 429 M_LIMIT_EXCEEDED with Retry-After. */
  readonly client: (key: string) => Promise<void>;
  readonly node: (localpart: string) => Promise<void>;
}

function limit(limiter: RateLimiter | undefined, what: string): (key: string) => Promise<void> {
  if (limiter === undefined) return async () => {};
  return async (key) => {
    const decision = await limiter.consume(key);
    if (!decision.allowed)
      throw retryLater(429, 'M_LIMIT_EXCEEDED', `too many registration requests ${what}; retry later`, decision.retryAfterMs);
  };
}

export type LimiterFactory = (limit: LimitSpec) => RateLimiter;

/** The two limits over limiters `makeLimiter` creates (one per limit that is not 0). */
export function createRateLimits(settings: RateLimitSettings, makeLimiter: LimiterFactory): RateLimits {
  return {
    client: limit(
      settings.perClientPerMinute === 0
        ? undefined
        : makeLimiter({ name: 'client', points: settings.perClientPerMinute, windowMs: WINDOW_MS }),
      'from this address',
    ),
    node: limit(
      settings.perNodePerMinute === 0 ? undefined : makeLimiter({ name: 'node', points: settings.perNodePerMinute, windowMs: WINDOW_MS }),
      'for this node',
    ),
  };
}
