/**
 * How long a node's request waits to learn whether the 200 on its way to it reached it: its worker says so within
 * milliseconds, unless the answer waits behind a slow one on a pipelined connection.
 */
export const ANSWER_WAIT_MS = 1000;

/**
 * The 200s on their way to their nodes, and the process delivering each (a worker's id; 0 for the primary). A node's
 * retry may be answered by another process, or the same one, while its first answer is still on its way; the node's
 * record counts as answered once any of them reached it (`onReached`).
 *
 * A request of a node whose answer is on its way first waits until that answer's fate is known (`settled`): the
 * report that it reached the node comes from the process that wrote it, over its own channel, and may arrive after the
 * node's next request, taken by another process. Without the wait, that request would get the 200 again instead of 409.
 */
export class AnswersOnTheirWay {
  private readonly delivering = new Map<string, number[]>();
  private readonly waiting = new Map<string, Set<() => void>>();
  /** Workers that exited: an answer handed to one of them afterwards reaches nobody. */
  private readonly gone = new Set<number>();

  constructor(private readonly onReached: (localpart: string) => void) {}

  /** The node's 200 is handed to `worker` to deliver. */
  sent(localpart: string, worker: number): void {
    if (this.gone.has(worker)) return;
    const workers = this.delivering.get(localpart);
    if (workers === undefined) this.delivering.set(localpart, [worker]);
    else workers.push(worker);
  }

  /** One answer's fate, as its worker says it: any answer that reached the node counts; a lost one is only forgotten. */
  settle(localpart: string, reached: boolean, worker: number): void {
    const workers = this.delivering.get(localpart);
    const at = workers?.indexOf(worker) ?? -1;
    if (workers === undefined || at === -1) return;
    if (reached) {
      this.delivering.delete(localpart);
      this.onReached(localpart);
      this.wake(localpart);
      return;
    }
    workers.splice(at, 1);
    if (workers.length === 0) this.forget(localpart);
  }

  /** A worker is gone: the answers it was delivering did not reach their nodes. */
  workerGone(worker: number): void {
    this.gone.add(worker);
    for (const [localpart, workers] of this.delivering) {
      const left = workers.filter((each) => each !== worker);
      if (left.length === 0) this.forget(localpart);
      else this.delivering.set(localpart, left);
    }
  }

  /**
   * Resolves once no answer to the node is on its way any more, or after `maxMs` (an answer queued behind a slow one
   * on a pipelined connection); undefined when there is none, so that the common case awaits nothing.
   */
  settled(localpart: string, maxMs: number): Promise<void> | undefined {
    if (!this.delivering.has(localpart)) return undefined;
    return new Promise((resolve) => {
      const waiters = this.waiting.get(localpart) ?? new Set<() => void>();
      this.waiting.set(localpart, waiters);
      const done = (): void => {
        clearTimeout(timer);
        waiters.delete(done);
        if (waiters.size === 0 && this.waiting.get(localpart) === waiters) this.waiting.delete(localpart);
        resolve();
      };
      const timer = setTimeout(done, maxMs);
      waiters.add(done);
    });
  }

  private forget(localpart: string): void {
    this.delivering.delete(localpart);
    this.wake(localpart);
  }

  private wake(localpart: string): void {
    const waiters = this.waiting.get(localpart);
    if (waiters === undefined) return;
    this.waiting.delete(localpart);
    for (const done of waiters) done();
  }
}
