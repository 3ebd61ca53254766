import { nodeLocalpartOf } from '../protocol/nodeId.js';
import type { NodeStore } from '../store/nodeStore.js';
import type { TransactionLog } from '../store/transactionLog.js';
import type { Logger } from '../log/logger.js';

export type TransactionOutcome = 'processed' | 'duplicate';
export type TransactionHandler = (txnId: string, body: unknown) => Promise<TransactionOutcome>;

export interface TransactionHandlerDeps {
  readonly serverName: string;
  readonly nodes: NodeStore;
  readonly transactions: TransactionLog;
  readonly log: Logger;
  readonly now?: () => Date;
}

/** How far ahead of this gate's clock an event's time may be (clocks differ); a later one is skipped and counted. */
export const MAX_FUTURE_MS = 5 * 60_000;

interface EventLike {
  readonly sender?: unknown;
  readonly origin_server_ts?: unknown;
}

/**
 * What of a transaction's body this handler uses: each event's sender (a string) and origin_server_ts (a number), and
 * nothing else, so that what crosses from a worker to the primary is small and plain whatever the events hold.
 */
export function transactionForPrimary(body: unknown): { readonly events: readonly EventLike[] | null } {
  const events = (body as { events?: unknown } | null | undefined)?.events;
  if (!Array.isArray(events)) return { events: null };
  return {
    events: events.map((event: unknown) => {
      const { sender, origin_server_ts: ts } = (typeof event === 'object' && event !== null ? event : {}) as EventLike;
      return {
        ...(typeof sender === 'string' ? { sender } : {}),
        ...(typeof ts === 'number' ? { origin_server_ts: ts } : {}),
      };
    }),
  };
}

/**
 * Handles PUT /transactions/{txnId}: each transaction is processed once, however often the homeserver
 * sends it; events sent by registered nodes move their "last seen" forward.
 */
export function createTransactionHandler(deps: TransactionHandlerDeps): TransactionHandler {
  const now = deps.now ?? (() => new Date());

  return async (txnId, body) => {
    const given = (body as { events?: unknown } | null | undefined)?.events;
    if (await deps.transactions.has(txnId)) {
      deps.log.debug('transaction already processed', { txn_id: txnId });
      return 'duplicate';
    }
    // Whatever a transaction holds is acknowledged: a refused one the homeserver sends again for ever, every later
    // transaction held behind it.
    if (!Array.isArray(given)) deps.log.warn('a transaction without an events array: acknowledged, nothing in it used', { txn_id: txnId });
    const events: unknown[] = Array.isArray(given) ? given : [];
    const latest = new Map<string, number>();
    let unusable = 0;
    let future = 0;
    const ceiling = now().getTime() + MAX_FUTURE_MS;
    for (const event of events as EventLike[]) {
      const localpart = nodeLocalpartOf(event?.sender, deps.serverName);
      if (localpart === undefined) continue;
      const ts = typeof event.origin_server_ts === 'number' ? event.origin_server_ts : now().getTime();
      // A time before 1970 or outside the Date range must not fail the whole transaction (PostgreSQL refuses years
      // before 1 and after 9999 as text): the homeserver would resend it forever.
      if (ts < 0 || Number.isNaN(new Date(ts).getTime())) {
        unusable += 1;
        continue;
      }
      // Nor may one from the future pin a node's last seen there, where no later event could move it.
      if (ts > ceiling) {
        future += 1;
        continue;
      }
      if ((latest.get(localpart) ?? -Infinity) < ts) latest.set(localpart, ts);
    }
    if (unusable > 0) deps.log.warn('skipped events whose origin_server_ts is not a usable time', { txn_id: txnId, skipped: unusable });
    if (future > 0)
      deps.log.warn(`skipped events whose origin_server_ts is more than ${MAX_FUTURE_MS / 60_000} minutes ahead of this gate's clock`, {
        txn_id: txnId,
        skipped: future,
      });
    let seen = 0;
    for (const [localpart, when] of latest) if (await deps.nodes.touch(localpart, new Date(when).toISOString())) seen += 1;
    await deps.transactions.add(txnId);
    deps.log.debug('transaction processed', { txn_id: txnId, events: events.length, nodes_seen: seen });
    return 'processed';
  };
}
