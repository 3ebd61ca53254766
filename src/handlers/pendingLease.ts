import type { NodeStore } from '../store/nodeStore.js';

/** A lease this gate holds on a node's pending entry while it registers the node. */
export interface HeldLease {
  /** Whether the lease still runs, with a margin: no homeserver call may start once it may have ended. */
  held(): boolean;
  /** Stops renewing it (the entry itself stays until it is confirmed or dropped). */
  release(): void;
}

export interface LeaseOptions {
  readonly leaseMs: number;
  readonly now?: () => number;
  /** A renewal failed for a reason other than losing the lease (the store is down): it is tried again at the next turn. */
  readonly onRenewFailure?: (localpart: string, error: unknown) => void;
}

/**
 * Holds the lease a claim just took, renewing it every third of its length for as long as this gate works on the
 * node, so that neither a long wait in the homeserver queue nor several calls in a row let it run out. The end is kept
 * on this side's clock, from the moment each claim or renewal was sent: the store's own end is never earlier than
 * that, so `held()` never says yes for a lease the store has already let go.
 */
export function holdLease(nodes: NodeStore, localpart: string, claimSentAt: number, options: LeaseOptions): HeldLease {
  const now = options.now ?? Date.now;
  const margin = Math.min(1000, options.leaseMs / 10);
  let endsAt = claimSentAt + options.leaseMs;
  let lost = false;
  let renewing = false;
  const renew = async (): Promise<void> => {
    if (renewing || lost) return;
    renewing = true;
    const sentAt = now();
    try {
      if (await nodes.renewPending(localpart)) endsAt = sentAt + options.leaseMs;
      else lost = true;
    } catch (error) {
      options.onRenewFailure?.(localpart, error);
    } finally {
      renewing = false;
    }
  };
  const timer = setInterval(() => void renew(), Math.max(1, Math.floor(options.leaseMs / 3)));
  timer.unref();
  return {
    held: () => !lost && endsAt - now() > margin,
    release: () => clearInterval(timer),
  };
}
