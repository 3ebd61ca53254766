import { forgetTarget } from '../protocol/forgetTarget.js';
import type { AddressPolicy } from '../access/addressLists.js';
import type { Settings } from '../config/settings.js';
import { createRateLimits, type LimiterFactory } from '../handlers/rateLimits.js';
import { createRegistrationService, type CallQueue, type RegistrationService } from '../handlers/registrationHandler.js';
import { createTransactionHandler, type TransactionOutcome } from '../handlers/transactionHandler.js';
import { createUserQuery } from '../handlers/userQuery.js';
import type { NewNode, Registrar, RegisteredUser } from '../homeserver/registrar.js';
import { isLoggedEach, outcomeOfError, outcomeOfUser, type Outcome } from '../handlers/registrationOutcome.js';
import { HeldBackError, MatrixError } from '../protocol/matrixError.js';
import { createAccountCeilings, type CeilingReached } from '../handlers/accountCeilings.js';
import type { UserExists } from '../homeserver/userExists.js';
import type { Logger } from '../log/logger.js';
import type { RefusalReport } from '../log/refusalTally.js';
import type { Store } from '../store/store.js';
import type { CeilingCounter } from '../store/ceilingCounter.js';
import type { LimitSpec } from '../store/rateLimiter.js';
import { ANSWER_WAIT_MS, AnswersOnTheirWay } from './answersOnTheirWay.js';
import type { Handlers, IpcPeer } from './ipc.js';
import {
  checkedKey,
  checkedLines,
  checkedLoad,
  checkedLocalparts,
  checkedNode,
  checkedRefusalReport,
  checkedRequestInfo,
  checkedString,
} from './workerMessages.js';

/**
 * What a worker asks of the primary, the one process that holds state: rate-limit allowances, the
 * store, the homeserver call queue. Workers have already read, validated and verified what they pass.
 */
export interface PrimaryApi {
  /** Charges one request to a client's allowance; throws 429 M_LIMIT_EXCEEDED when it is spent. */
  limitClient(key: string): Promise<void>;
  /** Registers a node whose signatures verified; the primary logs its outcome. */
  register(node: NewNode, request: RegistrationRequestInfo): Promise<RegisteredUser>;
  /**
   * Whether the 200s for these nodes reached their clients (no answer). Workers say a failure at once, and the
   * successes of one turn of their event loop together.
   */
  delivered(localparts: readonly string[], reached: boolean, worker: number): void;
  transaction(txnId: string, body: unknown): Promise<TransactionOutcome>;
  queryUser(userId: string): Promise<boolean>;
  /** The operator's `users forget`, through the running service: forgets these records (or all); how many there were. */
  forget(which: readonly string[] | 'all'): Promise<number>;
  /** A worker's refusals since its last report; no answer. */
  reportRefusals(report: RefusalReport): void;
  /** The share of its last second the worker's event loop was busy; no answer. */
  reportLoad(load: number, worker: number): void;
  /** A worker's log lines, formatted: the primary replaces the secrets it knows and writes them. No answer. */
  log(lines: readonly string[]): void;
}

/** What the worker knows of the request a registration came in, for the primary's outcome line. */
export interface RegistrationRequestInfo {
  /** The client's address (or IPv6 network), as its rate limit keys it. */
  readonly client: string;
  /** The client's address, whose networks the account ceilings count. */
  readonly address: string;
  /** Time the worker spent on the request before handing it over. */
  readonly elapsedMs: number;
  /** The worker that holds the client's connection (its cluster id; 0 in one process). */
  readonly worker: number;
}

/** The primary's API as a worker sees it, over IPC. */
export function primaryApiOver(peer: IpcPeer): PrimaryApi {
  return {
    limitClient: (key) => peer.request('limitClient', [key]),
    // Only the three fields cross: nothing else a request carried reaches the primary.
    register: ({ localpart, displayname, password }, { client, address, elapsedMs, worker }) =>
      peer.request('register', [
        { localpart, displayname, password },
        { client, address, elapsedMs, worker },
      ]),
    // The primary knows which worker says it (primaryApiHandlers).
    delivered: (localparts, reached) => peer.notify('delivered', [localparts, reached]),
    transaction: (txnId, body) => peer.request('transaction', [txnId, body]),
    queryUser: (userId) => peer.request('queryUser', [userId]),
    forget: (which) => peer.request('forget', [which]),
    reportRefusals: (report) => peer.notify('reportRefusals', [report]),
    reportLoad: (load) => peer.notify('reportLoad', [load]),
    log: (lines) => peer.notify('log', [lines]),
  };
}

/**
 * The primary's side of the same calls, for the worker `worker` (the supervisor's id of it: a worker's word on who it
 * is counts for nothing). What a worker sends is checked again here (workerMessages.ts).
 */
export function primaryApiHandlers(api: PrimaryApi, worker: number): Handlers {
  return {
    limitClient: (key: unknown) => api.limitClient(checkedKey(key)),
    register: (node: unknown, request: unknown) => api.register(checkedNode(node), { ...checkedRequestInfo(request), worker }),
    delivered: (localparts: unknown, reached: unknown) => api.delivered(checkedLocalparts(localparts), reached === true, worker),
    transaction: (txnId: unknown, body: unknown) => api.transaction(checkedString(txnId, 'transaction id'), body),
    queryUser: (userId: unknown) => api.queryUser(checkedString(userId, 'user id')),
    // A compromised worker forgets nothing but node records.
    forget: (which: unknown) => api.forget(forgetTarget(which)),
    reportRefusals: (report: unknown) => api.reportRefusals(checkedRefusalReport(report)),
    reportLoad: (load: unknown) => api.reportLoad(checkedLoad(load), worker),
    log: (lines: unknown) => api.log(checkedLines(lines)),
  };
}

export interface PrimaryStateDeps {
  readonly settings: Settings;
  readonly store: Store;
  readonly registrar: Registrar;
  readonly userExists: UserExists;
  /** The allow and deny lists in force now. */
  readonly policy: () => AddressPolicy;
  readonly makeLimiter: LimiterFactory;
  /** The account ceilings' counters, where the limits are counted. */
  readonly makeCeiling: (limit: LimitSpec) => CeilingCounter;
  readonly log: Logger;
  /** Every homeserver call waits its turn here. */
  readonly calls?: CallQueue;
  /** A ceiling of new accounts held a registration back. */
  readonly onCeilingReached?: (reached: CeilingReached) => void;
  readonly onTransaction?: (outcome: TransactionOutcome) => void;
  /** A worker's report of the refusals it counted. */
  readonly onRefusals: (report: RefusalReport) => void;
  /** A worker's report of its load (the busy share of its last second). */
  readonly onWorkerLoad?: (load: number, worker: number) => void;
  /** A registration the primary refused (node limit, lists, known node, busy …), from `client`. */
  readonly refused: (outcome: Outcome, client: string) => void;
  /** Whether a refusal's own line may be written now (the service writes a few a second; the rest are counted). */
  readonly refusalLine: () => boolean;
}

/** The primary's answers, over its store, homeserver client and limiters. */
export interface PrimaryState {
  readonly api: PrimaryApi;
  readonly registration: RegistrationService;
  /** A worker is gone: the answers it was delivering did not reach their nodes. */
  readonly workerGone: (worker: number) => void;
}

export function createPrimaryApi(deps: PrimaryStateDeps): PrimaryState {
  const { settings, store, log } = deps;
  const limits = createRateLimits(
    { perClientPerMinute: settings.rateLimitClientPerMinute, perNodePerMinute: settings.rateLimitNodePerMinute },
    deps.makeLimiter,
  );
  const registration = createRegistrationService({
    serverName: settings.serverName,
    nodes: store.nodes,
    limitNode: limits.node,
    ceilings: createAccountCeilings(settings.accountCeilings, deps.makeCeiling, deps.onCeilingReached),
    registrar: deps.registrar,
    userExists: deps.userExists,
    ...(deps.calls === undefined ? {} : { calls: deps.calls }),
    policy: deps.policy,
    log,
  });
  const answers = new AnswersOnTheirWay((localpart) => void registration.delivered(localpart, true));
  /** The one line (or, for a refusal, the count) each registration that reached the primary ends with. */
  const logOutcome = (outcome: Outcome, fields: Record<string, string | number | undefined>, client: string, heldBack?: string): void => {
    if (outcome === 'internal_error') {
      log.error('registration', fields);
    } else if (isLoggedEach(outcome)) {
      log.info('registration', fields);
    } else {
      deps.refused(outcome, heldBack ?? client);
      if (log.enabled('debug') && deps.refusalLine()) log.debug('registration', fields);
    }
  };
  const onTransaction = createTransactionHandler({
    serverName: settings.serverName,
    nodes: store.nodes,
    transactions: store.transactions,
    log,
  });
  const api: PrimaryApi = {
    limitClient: limits.client,
    async register(node, { client, address, elapsedMs, worker }) {
      const started = performance.now();
      const base = { localpart: node.localpart, client, worker };
      const durationMs = (): number => Math.round((elapsedMs + performance.now() - started) * 1000) / 1000;
      try {
        const earlierAnswer = answers.settled(node.localpart, ANSWER_WAIT_MS);
        if (earlierAnswer !== undefined) await earlierAnswer;
        const user = await registration.register(node, address);
        answers.sent(node.localpart, worker);
        logOutcome(outcomeOfUser(user), { ...base, outcome: outcomeOfUser(user), status: 200, duration_ms: durationMs() }, client);
        return user;
      } catch (error) {
        const known = error instanceof MatrixError ? error : undefined;
        const outcome = outcomeOfError(known);
        const reason = known?.message ?? `unexpected: ${(error as Error).message}`;
        // A registration held back for its network's sake is counted under that network, which the summary names.
        const heldBack = error instanceof HeldBackError ? error.network : undefined;
        logOutcome(outcome, { ...base, outcome, status: known?.status ?? 500, reason, duration_ms: durationMs() }, client, heldBack);
        throw error;
      }
    },
    delivered: (localparts, reached, worker) => {
      for (const localpart of localparts) answers.settle(localpart, reached, worker);
    },
    async transaction(txnId, body) {
      const outcome = await onTransaction(txnId, body);
      deps.onTransaction?.(outcome);
      return outcome;
    },
    queryUser: createUserQuery(settings.serverName, store.nodes),
    async forget(which) {
      const forgotten = await store.nodes.forget(which);
      log.info("forgot registered nodes at the operator's request: their next signed requests reach the homeserver", {
        asked: which === 'all' ? 'all' : which.length,
        forgotten,
      });
      return forgotten;
    },
    reportRefusals: deps.onRefusals,
    reportLoad: (load, worker) => deps.onWorkerLoad?.(load, worker),
    log: (lines) => {
      for (const line of lines) log.passOn(line);
    },
  };
  return {
    api,
    registration,
    workerGone: (worker) => answers.workerGone(worker),
  };
}
