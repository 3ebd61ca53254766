/** Remembers the ids of the last MAX_REMEMBERED transactions the homeserver sent, across restarts. */
export interface TransactionLog {
  has(txnId: string): Promise<boolean>;
  add(txnId: string): Promise<void>;
  /** The ids remembered now, oldest first (to copy a store). */
  ids(): Promise<string[]>;
}

/** Synapse retries a failed transaction with the same id soon after; far more than it ever has in flight. */
export const MAX_REMEMBERED = 10_000;
