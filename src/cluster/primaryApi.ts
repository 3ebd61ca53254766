import type { AddressPolicy } from '../access/addressLists.js';
import type { Settings } from '../config/settings.js';
import { createRateLimits, type LimiterFactory } from '../handlers/rateLimits.js';
import { createRegistrationService, type RegistrationService } from '../handlers/registrationHandler.js';
import { createTransactionHandler, type TransactionOutcome } from '../handlers/transactionHandler.js';
import { createUserQuery } from '../handlers/userQuery.js';
import type { NewNode, Registrar, RegisteredUser } from '../homeserver/registrar.js';
import type { UserExists } from '../homeserver/userExists.js';
import type { Logger } from '../log/logger.js';
import type { RefusalReport } from '../log/refusalTally.js';
import type { Store } from '../store/store.js';
import type { Handlers, IpcPeer } from './ipc.js';

/**
 * What a worker asks of the primary, the one process that holds state: rate-limit allowances, the
 * store, the homeserver call queue. Workers have already read, validated and verified what they pass.
 */
export interface PrimaryApi {
  /** Charges one request to a client's allowance; throws 429 M_LIMIT_EXCEEDED when it is spent. */
  limitClient(key: string): Promise<void>;
  /** Registers a node whose signatures verified. */
  register(node: NewNode): Promise<RegisteredUser>;
  transaction(txnId: string, body: unknown): Promise<TransactionOutcome>;
  queryUser(userId: string): Promise<boolean>;
  /** A worker's refusals since its last report; no answer. */
  reportRefusals(report: RefusalReport): void;
}

/** The primary's API as a worker sees it, over IPC. */
export function primaryApiOver(peer: IpcPeer): PrimaryApi {
  return {
    limitClient: (key) => peer.request('limitClient', [key]),
    // Only the three fields cross: nothing else a request carried reaches the primary.
    register: ({ localpart, displayname, password }) => peer.request('register', [{ localpart, displayname, password }]),
    transaction: (txnId, body) => peer.request('transaction', [txnId, body]),
    queryUser: (userId) => peer.request('queryUser', [userId]),
    reportRefusals: (report) => peer.notify('reportRefusals', [report]),
  };
}

/** The primary's side of the same calls. */
export function primaryApiHandlers(api: PrimaryApi): Handlers {
  return {
    limitClient: (key: string) => api.limitClient(key),
    register: (node: NewNode) => api.register(node),
    transaction: (txnId: string, body: unknown) => api.transaction(txnId, body),
    queryUser: (userId: string) => api.queryUser(userId),
    reportRefusals: (report: RefusalReport) => api.reportRefusals(report),
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
  readonly log: Logger;
  readonly onTransaction?: (outcome: TransactionOutcome) => void;
  readonly onRefusals: (report: RefusalReport) => void;
}

/** The primary's answers, over its store, homeserver client and limiters. */
export function createPrimaryApi(deps: PrimaryStateDeps): { readonly api: PrimaryApi; readonly registration: RegistrationService } {
  const { settings, store, log } = deps;
  const limits = createRateLimits(
    { perClientPerMinute: settings.rateLimitClientPerMinute, perNodePerMinute: settings.rateLimitNodePerMinute },
    deps.makeLimiter,
  );
  const registration = createRegistrationService({
    serverName: settings.serverName,
    nodes: store.nodes,
    limitNode: limits.node,
    registrar: deps.registrar,
    userExists: deps.userExists,
    policy: deps.policy,
    log,
  });
  const onTransaction = createTransactionHandler({
    serverName: settings.serverName,
    nodes: store.nodes,
    transactions: store.transactions,
    log,
  });
  const api: PrimaryApi = {
    limitClient: limits.client,
    register: registration.register,
    async transaction(txnId, body) {
      const outcome = await onTransaction(txnId, body);
      deps.onTransaction?.(outcome);
      return outcome;
    },
    queryUser: createUserQuery(settings.serverName, store.nodes),
    reportRefusals: deps.onRefusals,
  };
  return { api, registration };
}
