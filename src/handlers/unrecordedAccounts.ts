import type { Logger } from '../log/logger.js';
import type { NodeRecord, NodeStore } from '../store/nodeStore.js';

/** How often records the store could not take are tried again. */
const RETRY_EVERY_MS = 2000;

/**
 * Accounts the homeserver created whose record the store could not take (it went down mid-registration): each is
 * written as soon as the store answers again, not left to a reconciliation that another gate's lease or a restart
 * would delay. The records are unanswered: the node was told to retry, and its retry gets 200 once.
 */
export class UnrecordedAccounts {
  private readonly waiting = new Map<string, NodeRecord>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly nodes: NodeStore,
    private readonly log: Logger,
  ) {}

  add(record: NodeRecord): void {
    this.waiting.set(record.localpart, { ...record, answered: false });
    this.schedule();
  }

  get size(): number {
    return this.waiting.size;
  }

  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => void this.retry(), RETRY_EVERY_MS);
    this.timer.unref();
  }

  private async retry(): Promise<void> {
    this.timer = undefined;
    for (const [localpart, record] of [...this.waiting]) {
      try {
        await this.nodes.confirm(record);
        this.waiting.delete(localpart);
        this.log.info('recorded an account the homeserver created while the store was unreachable', { localpart });
      } catch {
        break; // still unreachable: the rest waits for the next round
      }
    }
    if (this.waiting.size > 0) this.schedule();
  }
}
