import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { retryLater } from '../protocol/matrixError.js';

export interface RateLimitSettings {
  /** Registration requests per minute from one client address; 0 turns the limit off. */
  readonly perClientPerMinute: number;
  /** Registration requests per minute for one node address; 0 turns the limit off. */
  readonly perNodePerMinute: number;
}

export interface RateLimits {
  /** Resolves, or throws 429 M_LIMIT_EXCEEDED with Retry-After. */
  client(ip: string): Promise<void>;
  node(localpart: string): Promise<void>;
}

function limiter(pointsPerMinute: number, what: string): (key: string) => Promise<void> {
  if (pointsPerMinute === 0) return async () => {};
  const memory = new RateLimiterMemory({ points: pointsPerMinute, duration: 60 });
  return async (key) => {
    try {
      await memory.consume(key);
    } catch (rejection) {
      if (!(rejection instanceof RateLimiterRes)) throw rejection;
      throw retryLater(429, 'M_LIMIT_EXCEEDED', `too many registration requests ${what}; retry later`, rejection.msBeforeNext);
    }
  };
}

export function createRateLimits(settings: RateLimitSettings): RateLimits {
  return { client: limiter(settings.perClientPerMinute, 'from this address'), node: limiter(settings.perNodePerMinute, 'for this node') };
}
