import { HeldBackError } from '../protocol/matrixError.js';

interface Waiting {
  readonly start: () => void;
  readonly refuse: (error: Error) => void;
}

const busy = (network: string): Error =>
  new HeldBackError(503, 'M_UNKNOWN', 'too many registrations in progress; retry later', network === '' ? 'service' : network, 1000);

/**
 * At most `maxActive` homeserver calls at once and `maxQueued` waiting, shared fairly among the networks calls come
 * from (each client's /24 or /48): a free slot goes to the waiting network with the fewest calls at the homeserver
 * (in turn, among equals), so a flood gets no new slot while a network with fewer waits, and is down to its share
 * once its calls in progress end. A full queue takes a newcomer from a network with at least two fewer calls waiting
 * than the fullest by refusing (503) the fullest one's latest: a flood cannot keep anyone else out by filling the
 * queue. Past that, 503 with Retry-After at once.
 */
export class CallLimiter {
  private active = 0;
  private waitingCount = 0;
  private refusedCount = 0;
  /** Per network: calls at the homeserver, and calls waiting (oldest first). In Map order for turns among equals. */
  private readonly networks = new Map<string, { active: number; waiting: Waiting[] }>();

  constructor(
    private readonly maxActive: number,
    private readonly maxQueued: number,
  ) {}

  get inFlight(): number {
    return this.active;
  }

  get queued(): number {
    return this.waitingCount;
  }

  /** Calls refused because the queue was full (503), since the start. */
  get refused(): number {
    return this.refusedCount;
  }

  private refusal(network: string): Error {
    this.refusedCount += 1;
    return busy(network);
  }

  async run<T>(call: () => Promise<T>, network = ''): Promise<T> {
    const entry = this.entry(network);
    if (this.active >= this.maxActive) {
      if (this.waitingCount >= this.maxQueued && !this.makeRoomFor(entry.waiting.length)) {
        this.forget(network, entry);
        throw this.refusal(network);
      }
      await new Promise<void>((start, refuse) => {
        entry.waiting.push({ start, refuse });
        this.waitingCount += 1;
      });
    } else {
      this.active += 1;
      entry.active += 1;
    }
    try {
      return await call();
    } finally {
      entry.active -= 1;
      this.active -= 1;
      this.forget(network, entry);
      this.startNext();
    }
  }

  private entry(network: string): { active: number; waiting: Waiting[] } {
    let entry = this.networks.get(network);
    if (entry === undefined) {
      entry = { active: 0, waiting: [] };
      this.networks.set(network, entry);
    }
    return entry;
  }

  private forget(network: string, entry: { active: number; waiting: Waiting[] }): void {
    if (entry.active === 0 && entry.waiting.length === 0) this.networks.delete(network);
  }

  /** The slot just freed goes to the waiting network with the fewest calls at the homeserver, first in turn. */
  private startNext(): void {
    let chosen: [string, { active: number; waiting: Waiting[] }] | undefined;
    for (const candidate of this.networks) {
      if (candidate[1].waiting.length > 0 && (chosen === undefined || candidate[1].active < chosen[1].active)) chosen = candidate;
    }
    if (chosen === undefined) return;
    const [network, entry] = chosen;
    const next = entry.waiting.shift() as Waiting;
    this.waitingCount -= 1;
    this.active += 1;
    entry.active += 1;
    // Its turn is taken: behind every other network now, in Map order.
    this.networks.delete(network);
    this.networks.set(network, entry);
    next.start();
  }

  /** Refuses the latest waiting call of the network with the most waiting, if it has more than `waiting` (the newcomer's). */
  private makeRoomFor(waiting: number): boolean {
    let fullest: [string, { active: number; waiting: Waiting[] }] | undefined;
    for (const candidate of this.networks)
      if (fullest === undefined || candidate[1].waiting.length > fullest[1].waiting.length) fullest = candidate;
    if (fullest === undefined || fullest[1].waiting.length <= waiting + 1) return false;
    const pushedOut = fullest[1].waiting.pop() as Waiting;
    this.waitingCount -= 1;
    pushedOut.refuse(this.refusal(fullest[0]));
    return true;
  }
}
