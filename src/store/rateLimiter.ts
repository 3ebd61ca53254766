export type RateLimitDecision = { readonly allowed: true } | { readonly allowed: false; readonly retryAfterMs: number };

/** Counts requests per key against an allowance per minute. */
export interface RateLimiter {
  /** Resolves with the decision; rejects (StoreUnavailableError) when the shared store cannot count. */
  consume(key: string): Promise<RateLimitDecision>;
}

export const ALLOWED: RateLimitDecision = { allowed: true };
/** Every limit counts per minute. */
export const WINDOW_MS = 60_000;

/**
 * Keys a limit remembers at once. A flood from more distinct clients than this in one minute makes the limit forget
 * the oldest, which then start a fresh allowance: memory (about 10 MB) and table rows stay bounded whatever the flood.
 */
export const MAX_REMEMBERED_KEYS = 100_000;
