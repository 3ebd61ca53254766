/** One registered node, written after the homeserver confirmed its account. */
export interface NodeRecord {
  readonly localpart: string;
  readonly userId: string;
  readonly displayname: string;
  /** ISO 8601 time of the registration. */
  readonly registeredAt: string;
  /** ISO 8601 time of the node's latest event the homeserver sent us. */
  readonly lastSeen?: string;
  /**
   * False when the account was confirmed by reconciling an interrupted registration: the node never
   * got its answer, so its next correctly signed request is answered with success once.
   */
  readonly answered?: boolean;
}

/** A registration whose homeserver call started but whose outcome is not known yet. */
export interface PendingRegistration {
  readonly localpart: string;
  readonly userId: string;
  readonly displayname: string;
  readonly startedAt: string;
}

/**
 * The answer to a claim on a node's pending entry. Claimed: this gate may call the homeserver for the node (and
 * `interrupted` says an earlier attempt's entry was there). Held: another gate's call may be in flight. Recorded: the
 * node is registered already, and nothing was written.
 */
export type PendingClaim =
  | { readonly claimed: true; readonly interrupted: boolean }
  | { readonly claimed: false; readonly retryAfterMs: number }
  | { readonly claimed: false; readonly recorded: NodeRecord };

/**
 * A pending entry carries a lease: its holder (one store instance: one gate's primary, for one run) and an end. While the
 * lease is live only its holder may claim the entry; once it has ended, or its holder is known to be gone, anyone may.
 */
export interface NodeStore {
  /** How long a claim's lease lasts, from the moment the store takes it. */
  readonly leaseMs: number;
  get(localpart: string): Promise<NodeRecord | undefined>;
  put(record: NodeRecord): Promise<void>;
  /** Moves lastSeen forward to `when` for a recorded node; false when the node is not recorded. */
  touch(localpart: string, when: string): Promise<boolean>;
  getPending(localpart: string): Promise<PendingRegistration | undefined>;
  /**
   * Written before the homeserver is called, so a crash leaves a trace to reconcile: takes (or renews) the lease on
   * the node's entry, unless the node is recorded (its record is answered, in the same look) or another holder's lease
   * is live.
   */
  claimPending(pending: PendingRegistration): Promise<PendingClaim>;
  /**
   * Extends this holder's lease on the node's entry by the lease's length from now; false when the lease is no longer
   * this holder's (another took the entry over, or it was dropped).
   */
  renewPending(localpart: string): Promise<boolean>;
  deletePending(localpart: string): Promise<void>;
  /** Records the node and drops its pending entry in one atomic write. */
  confirm(record: NodeRecord): Promise<void>;
  /**
   * The nodes' 200s reached them (true), or did not (false): their records say so, in one write for them all
   * (recorded nodes only; others are ignored).
   */
  markAnswered(localparts: readonly string[], answered: boolean): Promise<void>;
  /**
   * Forgets these nodes' records (every record with 'all'), in one write: their next correctly signed requests reach
   * the homeserver again (an operator's `users forget`). Returns how many were recorded.
   */
  forget(localparts: readonly string[] | 'all'): Promise<number>;
  listPending(): Promise<PendingRegistration[]>;
  /** Pending entries nobody holds a live lease on: interrupted attempts, to reconcile. */
  listReconcilable(): Promise<PendingRegistration[]>;
  /** Every recorded node, in address order. */
  list(): AsyncIterable<NodeRecord>;
}
