/** Per-refusal log lines the whole service writes per second at most (--verbosity 4 and 5); the rest are counted. */
export const REFUSAL_LINES_PER_SECOND = 10;

/**
 * A token bucket of log lines: `perSecond` on average, at most one second's worth at once. Each process gets its
 * share of the service's budget, so that no flood decides the log's volume, whatever the verbosity.
 */
export class LineBudget {
  private tokens: number;
  private last: number;

  constructor(
    private readonly perSecond: number,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = Math.max(1, perSecond);
    this.last = now();
  }

  take(): boolean {
    const now = this.now();
    this.tokens = Math.min(Math.max(1, this.perSecond), this.tokens + ((now - this.last) / 1000) * this.perSecond);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
