import { badJson } from '../protocol/matrixError.js';
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

interface EventLike {
  readonly sender?: unknown;
  readonly origin_server_ts?: unknown;
}

/**
 * Handles PUT /transactions/{txnId}: each transaction is processed once, however often the homeserver
 * sends it; events sent by registered nodes move their "last seen" forward.
 */
export function createTransactionHandler(deps: TransactionHandlerDeps): TransactionHandler {
  const now = deps.now ?? (() => new Date());

  return async (txnId, body) => {
    const events = (body as { events?: unknown } | undefined)?.events;
    if (!Array.isArray(events)) throw badJson('transaction body must be a JSON object with an events array');
    if (await deps.transactions.has(txnId)) {
      deps.log.debug('transaction already processed', { txn_id: txnId });
      return 'duplicate';
    }
    const latest = new Map<string, string>();
    let skipped = 0;
    for (const event of events as EventLike[]) {
      const localpart = nodeLocalpartOf(event?.sender, deps.serverName);
      if (localpart === undefined) continue;
      const ts = typeof event.origin_server_ts === 'number' && Number.isFinite(event.origin_server_ts) ? event.origin_server_ts : undefined;
      const date = ts === undefined ? now() : new Date(ts);
      // A time outside the Date range must not fail the whole transaction: the homeserver would resend it forever.
      if (Number.isNaN(date.getTime())) {
        skipped += 1;
        continue;
      }
      const when = date.toISOString();
      if ((latest.get(localpart) ?? '') < when) latest.set(localpart, when);
    }
    if (skipped > 0) deps.log.warn('skipped events whose origin_server_ts is not a usable time', { txn_id: txnId, skipped });
    let seen = 0;
    for (const [localpart, when] of latest) if (await deps.nodes.touch(localpart, when)) seen += 1;
    await deps.transactions.add(txnId);
    deps.log.debug('transaction processed', { txn_id: txnId, events: events.length, nodes_seen: seen });
    return 'processed';
  };
}
