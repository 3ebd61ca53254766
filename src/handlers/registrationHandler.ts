import { MatrixError, retryLater, userInUse } from '../protocol/matrixError.js';
import { userIdFor } from '../protocol/nodeId.js';
import type { NewNode, Registrar, RegisteredUser } from '../homeserver/registrar.js';
import type { UserExists } from '../homeserver/userExists.js';
import type { NodeRecord, NodeStore } from '../store/nodeStore.js';
import type { Logger } from '../log/logger.js';
import type { AddressPolicy } from '../access/addressLists.js';
import { holdLease, type HeldLease } from './pendingLease.js';
import type { AccountCeilings, AccountCharge } from './accountCeilings.js';
import { queueNetworkOf } from '../access/networks.js';
import { surelyCreatedNothing } from '../homeserver/createdNothing.js';
import { UnrecordedAccounts } from './unrecordedAccounts.js';

/** Registers a node whose signatures were verified, for the client at `clientAddress` (its address, not its key). */
export type RegistrationHandler = (node: NewNode, clientAddress: string) => Promise<RegisteredUser>;

export interface ReconcileSummary {
  readonly confirmed: number;
  readonly dropped: number;
  readonly unresolved: number;
}

export interface RegistrationService {
  readonly register: RegistrationHandler;
  /**
   * Whether the node's 200 reached its client. The record is written unanswered, and counts as answered only once its
   * 200 reached the node (batched: one store write for many): a gate that dies before, or a client that hung up first,
   * leaves it unanswered, so that the node's next request gets 200 once more, never a 409 for its own account.
   * Resolves once the mark is written (or could not be).
   */
  delivered(localpart: string, reached: boolean): Promise<void>;
  /**
   * Resolves registrations a crash interrupted, once nobody holds their lease (any gate's): confirmed when the user
   * exists on the homeserver, else dropped.
   */
  reconcilePending(): Promise<ReconcileSummary>;
  /** Stops the background work (records waiting for the store), once the marks of answers delivered are written. */
  close(): Promise<void>;
}

/**
 * The homeserver call queue: runs `call` once a slot is free (or refuses at once with 503 when too many wait), sharing
 * the slots fairly among the `network`s calls come from.
 */
export type CallQueue = <T>(call: () => Promise<T>, network?: string) => Promise<T>;

export interface RegistrationHandlerDeps {
  readonly serverName: string;
  readonly nodes: NodeStore;
  /** The per-node rate limit: throws 429. Charged only here, after the signatures verified. */
  readonly limitNode: (localpart: string) => Promise<void>;
  readonly registrar: Registrar;
  readonly userExists: UserExists;
  /** Every homeserver call waits its turn here; none by default (tests). */
  readonly calls?: CallQueue;
  /** New accounts per client network and for the service; none by default (tests). */
  readonly ceilings?: AccountCeilings;
  /** The allow/deny lists in force now (they can be reloaded). */
  readonly policy: () => AddressPolicy;
  readonly log: Logger;
  readonly now?: () => Date;
}

/** How soon marks of delivered answers that the store could not take are tried again. */
const MARK_RETRY_MS = 5000;

const leaseLost = (): MatrixError =>
  retryLater(503, 'M_UNKNOWN', 'the registration could not be started while this gate held the node; retry later', 1000);

/**
 * Decides a verified request: charge the node's rate limit, consult the allow and deny lists (only
 * now, so a forged request learns nothing of them), then refuse a known node, finish a registration a crash interrupted, or create the
 * node on the homeserver. A pending entry is written before the homeserver is called and turned into
 * the node's record in one write after it confirmed, so a crash at any point loses nothing.
 */
export function createRegistrationService(deps: RegistrationHandlerDeps): RegistrationService {
  const { nodes, log } = deps;
  const inFlight = new Set<string>();
  /** Nodes this gate is reconciling now: a request of theirs waits for it, instead of a 409 for its own account. */
  const reconciling = new Map<string, Promise<unknown>>();
  const now = deps.now ?? (() => new Date());
  const calls: CallQueue = deps.calls ?? ((call) => call());
  const ceilings: AccountCeilings = deps.ceilings ?? { charge: async () => ({ refund: async () => {} }) };
  const unrecorded = new UnrecordedAccounts(nodes, log);
  const toMarkAnswered = new Set<string>();
  /** Marks being written: with those queued, nodes whose 200 reached them though the store may not say so yet. */
  const markingAnswered = new Set<string>();
  let markBatch: Promise<void> | undefined;
  let closing = false;
  const flushMarks = (): Promise<void> => {
    markBatch = undefined;
    return toMarkAnswered.size === 0 ? Promise.resolve() : markAnswered();
  };
  const answeredNow = (localpart: string): boolean => toMarkAnswered.has(localpart) || markingAnswered.has(localpart);

  /** Writes the record; if the store cannot take it, answers 503 and keeps trying in the background. */
  async function record(entry: NodeRecord): Promise<void> {
    try {
      await nodes.confirm(entry);
    } catch (error) {
      unrecorded.add(entry);
      log.error('registered on the homeserver but the store cannot record it yet; recording it once the store answers', {
        localpart: entry.localpart,
        reason: (error as Error).message,
      });
      throw error;
    }
  }

  /**
   * The answer to a node whose account exists already (a registration completed after an interruption, or one whose
   * 200 did not reach it): what a direct registration answers, a token included where the backend gives one.
   */
  async function answerFor(node: NewNode, userId: string, clientAddress: string): Promise<RegisteredUser> {
    const logIn = deps.registrar.logIn;
    if (logIn === undefined) return { userId, homeServer: deps.serverName };
    const user = await calls(() => logIn(node), queueNetworkOf(clientAddress));
    return { ...user, userId };
  }

  /**
   * A recorded node's answer: 409, unless its 200 never reached it (then the same answer again). `markedBefore`: its
   * mark was being written when the record was read, which may have read the record before the mark landed.
   */
  function answerRecorded(recorded: NodeRecord, markedBefore = false): RegisteredUser {
    if (recorded.answered !== false || markedBefore || answeredNow(recorded.localpart)) throw userInUse('this node is already registered');
    // The same answer again, without logging in anew: a replayed body gets no token of its own.
    return { userId: recorded.userId, homeServer: deps.serverName };
  }

  async function register(request: NewNode, clientAddress: string): Promise<RegisteredUser> {
    const { localpart, displayname } = request;
    const userId = userIdFor(localpart, deps.serverName);
    // The lease keeps every other gate from calling the homeserver for this node while this one may be. The claim
    // also looks for the node's record, and writes nothing when there is one.
    const claimSentAt = Date.now();
    const markedBefore = answeredNow(localpart);
    const claim = await nodes.claimPending({ localpart, userId, displayname, startedAt: now().toISOString() });
    if ('recorded' in claim) return answerRecorded(claim.recorded, markedBefore);
    if (!claim.claimed) {
      throw retryLater(503, 'M_UNKNOWN', 'a registration of this node is in progress on another gate; retry later', claim.retryAfterMs);
    }
    const lease = holdLease(nodes, localpart, claimSentAt, {
      leaseMs: nodes.leaseMs,
      onRenewFailure: (_localpart, error) =>
        log.warn('cannot renew the lease of a registration in progress', { localpart, reason: (error as Error).message }),
    });
    try {
      return await registerHolding(request, clientAddress, userId, claim.interrupted, lease);
    } finally {
      lease.release();
    }
  }

  async function registerHolding(
    request: NewNode,
    clientAddress: string,
    userId: string,
    interrupted: boolean,
    lease: HeldLease,
  ): Promise<RegisteredUser> {
    const { localpart, displayname } = request;
    // Written unanswered: it counts as answered once the 200 reached the node (delivered).
    const recordOf = (registeredUserId: string): NodeRecord => ({
      localpart,
      userId: registeredUserId,
      displayname,
      registeredAt: now().toISOString(),
      answered: false,
    });
    // `interrupted`: a pending entry of ours was there, so an earlier attempt of this node's reached the homeserver,
    // and its outcome is not known. Only such an entry makes an existing account the node's own.
    const completeInterrupted = async (): Promise<RegisteredUser> => {
      // Logged in first: a login that fails leaves the entry pending, and the node's retry completes it then.
      const answer = await answerFor(request, userId, clientAddress);
      await record(recordOf(userId));
      log.info('completed a registration that was interrupted', { localpart });
      return answer;
    };
    const network = queueNetworkOf(clientAddress);
    if (interrupted && (await calls(() => deps.userExists(userId), network))) return completeInterrupted();

    /** Nothing of this attempt reached the homeserver: an entry of its own goes (an earlier attempt's stays). */
    const forgetAttempt = async (): Promise<void> => {
      if (interrupted || !lease.held()) return;
      await nodes
        .deletePending(localpart)
        .catch((error: Error) => log.warn('cannot drop the pending entry of a registration refused', { localpart, reason: error.message }));
    };
    // The account is counted from here; given back below when the homeserver surely did not create it.
    let charge: AccountCharge;
    try {
      charge = await ceilings.charge(clientAddress);
    } catch (error) {
      await forgetAttempt();
      throw error;
    }
    // The registration's own answer matters more than a count the store could not give back (it lapses with its window).
    const giveBack = (): Promise<void> =>
      charge.refund().catch((error: Error) => log.warn('cannot give back a count of new accounts', { localpart, reason: error.message }));
    let called = false;
    let user: RegisteredUser;
    try {
      user = await calls(() => {
        // The queue may have held us long; once the lease may have ended, another gate may be deciding this node.
        if (!lease.held()) throw leaseLost();
        called = true;
        return deps.registrar.register(request);
      }, network);
    } catch (error) {
      if (!called || surelyCreatedNothing(error)) await giveBack();
      // Held back in the queue (or the lease gone): no trace to leave, the node's retry starts afresh.
      if (!called) await forgetAttempt();
      if (error instanceof MatrixError && error.status === 409) {
        // The earlier attempt's account, created after we stopped waiting for it: the node's own.
        if (interrupted) return completeInterrupted();
        // Another gate recorded the node while our claim ran (a record the claim could not see yet): its record decides.
        const recordedMeanwhile = await nodes.get(localpart);
        await nodes.deletePending(localpart);
        if (recordedMeanwhile !== undefined) return answerRecorded(recordedMeanwhile);
        // Already on the homeserver before any attempt of ours: not ours, and it keeps its 409.
      }
      // Anything else may have happened or not: it stays pending.
      throw error;
    }
    // A password reset made no new account.
    if (user.passwordReset === true) await giveBack();
    if (user.warning !== undefined) log.warn(user.warning, { localpart });
    if (user.userId !== userId) {
      log.error('homeserver created a different user id than expected: is --matrixdomain its server_name?', {
        expected: userId,
        got: user.userId,
      });
    }
    await record(recordOf(user.userId));
    return user;
  }

  /** One registration per node at a time; a second concurrent one is refused, never queued. */
  async function exclusively<T>(localpart: string, work: () => Promise<T>): Promise<T | undefined> {
    if (inFlight.has(localpart)) return undefined;
    inFlight.add(localpart);
    try {
      return await work();
    } finally {
      inFlight.delete(localpart);
    }
  }

  async function markAnswered(): Promise<void> {
    const localparts = [...toMarkAnswered];
    toMarkAnswered.clear();
    for (const localpart of localparts) markingAnswered.add(localpart);
    try {
      await nodes.markAnswered(localparts, true);
    } catch (error) {
      log.warn('cannot record that answers reached their nodes yet: trying again; meanwhile a retry of theirs gets 200 again', {
        count: localparts.length,
        reason: (error as Error).message,
      });
      if (!closing) {
        for (const localpart of localparts) toMarkAnswered.add(localpart);
        setTimeout(() => void flushMarks(), MARK_RETRY_MS).unref();
      }
    } finally {
      for (const localpart of localparts) markingAnswered.delete(localpart);
    }
  }

  return {
    async register(request, clientAddress) {
      await deps.limitNode(request.localpart);
      deps.policy()(request.localpart);
      await reconciling.get(request.localpart);
      const user = await exclusively(request.localpart, () => register(request, clientAddress));
      if (user === undefined) throw userInUse('a registration of this node is already in progress');
      return user;
    },
    delivered(localpart, reached) {
      // Not reached: the record stays unanswered, as written.
      if (!reached) return Promise.resolve();
      toMarkAnswered.add(localpart);
      // Every mark of this turn in one write; resolves once it is written (or could not be).
      markBatch ??= new Promise<void>((resolve) => setImmediate(resolve)).then(flushMarks);
      return markBatch;
    },
    async reconcilePending() {
      let confirmed = 0;
      let dropped = 0;
      let unresolved = 0;
      for (const pending of await nodes.listReconcilable()) {
        const reconciled = exclusively(pending.localpart, async () => {
          // Another gate may be reconciling it, or the node registering again there.
          const claim = await nodes.claimPending(pending);
          if ('recorded' in claim) {
            // Recorded meanwhile: the entry is left over.
            await nodes.deletePending(pending.localpart);
            return 'dropped' as const;
          }
          if (!claim.claimed) return 'skipped' as const;
          if (await calls(() => deps.userExists(pending.userId))) {
            await nodes.confirm({
              localpart: pending.localpart,
              userId: pending.userId,
              displayname: pending.displayname,
              registeredAt: pending.startedAt,
              answered: false,
            });
            return 'confirmed' as const;
          }
          await nodes.deletePending(pending.localpart);
          return 'dropped' as const;
        }).catch((error: unknown) => {
          log.warn('cannot reconcile an interrupted registration yet', { localpart: pending.localpart, reason: (error as Error).message });
          return 'unresolved' as const;
        });
        reconciling.set(pending.localpart, reconciled);
        const outcome = await reconciled.finally(() => reconciling.delete(pending.localpart));
        // Undefined or skipped: a registration of the node is in progress here or elsewhere, which decides it.
        if (outcome === 'confirmed') confirmed += 1;
        else if (outcome === 'dropped') dropped += 1;
        else if (outcome === 'unresolved') unresolved += 1;
      }
      return { confirmed, dropped, unresolved };
    },
    async close() {
      closing = true;
      await markBatch;
      if (toMarkAnswered.size > 0) await markAnswered();
      unrecorded.close();
    },
  };
}
