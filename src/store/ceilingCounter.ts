/** A unit counted (with the window it was counted in), or none: the window is full until `retryAfterMs` from now. */
export type Taken = { readonly taken: true; readonly window: number } | { readonly taken: false; readonly retryAfterMs: number };

/**
 * Counts units (new accounts) per key against a ceiling per window. Unlike a request limit, what does not fit is not
 * counted: a flood past its ceiling leaves the count at the ceiling, and everything counted is a unit given out.
 */
export interface CeilingCounter {
  /** Counts one unit for `key` when its window has room. Rejects (StoreUnavailableError) when the store cannot count. */
  take(key: string): Promise<Taken>;
  /** Gives back a unit taken in `window` (what `take` said); nothing once that window has ended. */
  giveBack(key: string, window: number): Promise<void>;
}
