import { retryLater } from '../protocol/matrixError.js';

/**
 * At most `maxActive` homeserver calls at once and `maxQueued` waiting; past that, refuse at once
 * with 503 and Retry-After rather than let a queue grow without bound.
 */
export class CallLimiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly maxActive: number,
    private readonly maxQueued: number,
  ) {}

  get inFlight(): number {
    return this.active;
  }

  get queued(): number {
    return this.waiting.length;
  }

  async run<T>(call: () => Promise<T>): Promise<T> {
    if (this.active >= this.maxActive) {
      if (this.waiting.length >= this.maxQueued) {
        throw retryLater(503, 'M_UNKNOWN', 'too many registrations in progress; retry later', 1000);
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.active += 1;
    }
    try {
      return await call();
    } finally {
      const next = this.waiting.shift();
      if (next === undefined) this.active -= 1;
      else next(); // the slot passes straight to the next caller
    }
  }
}
