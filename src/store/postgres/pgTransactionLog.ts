import type pg from 'pg';
import { MAX_REMEMBERED, type TransactionLog } from '../transactionLog.js';
import { query } from './pgConnection.js';

/** Prune once per this many additions: the table holds at most MAX_REMEMBERED + PRUNE_EVERY ids. */
const PRUNE_EVERY = 100;

/** The transaction ids in PostgreSQL: a transaction delivered to one gate and retried to another is processed once. */
export function createPgTransactionLog(pool: pg.Pool, capacity = MAX_REMEMBERED): TransactionLog {
  let added = 0;
  return {
    async has(txnId) {
      const { rows } = await query(pool, 'SELECT 1 FROM regservice_transactions WHERE txn_id = $1', [txnId]);
      return rows.length > 0;
    },
    async add(txnId) {
      await query(pool, 'INSERT INTO regservice_transactions (txn_id) VALUES ($1) ON CONFLICT (txn_id) DO NOTHING', [txnId]);
      added += 1;
      if (added % PRUNE_EVERY === 0) {
        await query(pool, 'DELETE FROM regservice_transactions WHERE seq <= (SELECT max(seq) FROM regservice_transactions) - $1', [
          capacity,
        ]);
      }
    },
    async ids() {
      const { rows } = await query<{ txn_id: string }>(pool, 'SELECT txn_id FROM regservice_transactions ORDER BY seq DESC LIMIT $1', [
        capacity,
      ]);
      return rows.map((row) => row.txn_id).reverse();
    },
  };
}
