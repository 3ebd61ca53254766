export type RateLimitDecision = { readonly allowed: true } | { readonly allowed: false; readonly retryAfterMs: number };

/** Counts uses per key against an allowance per window. */
export interface RateLimiter {
  /** Resolves with the decision; rejects (StoreUnavailableError) when the shared store cannot count. */
  consume(key: string): Promise<RateLimitDecision>;
}

/** One limit or ceiling: its name (keys are counted apart per name), and its `points` per window of `windowMs`. */
export interface LimitSpec {
  readonly name: string;
  readonly points: number;
  readonly windowMs: number;
}

export const ALLOWED: RateLimitDecision = { allowed: true };
/** The request limits count per minute. */
export const WINDOW_MS = 60_000;

/**
 * Keys a limit remembers at once. A flood from more distinct clients than this in one minute makes the limit forget
 * the oldest, which then start a fresh allowance: memory (about 10 MB) and table rows stay bounded whatever the flood.
 */
export const MAX_REMEMBERED_KEYS = 100_000;
