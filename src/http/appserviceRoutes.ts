import express, { Router, type RequestHandler } from 'express';
import type { TransactionHandler } from '../handlers/transactionHandler.js';
import type { UserQuery } from '../handlers/userQuery.js';
import type { Logger } from '../log/logger.js';
import { MatrixError } from '../protocol/matrixError.js';
import { methodNotAllowed, sendMatrixError } from './errorResponses.js';
import { requireHsToken } from './hsTokenAuth.js';
import { forgetTarget } from '../protocol/forgetTarget.js';

export interface AppserviceRouteDeps {
  /** SHA-256 of the hs_token, hex (hsTokenDigest). */
  readonly hsTokenSha256: string;
  readonly onTransaction: TransactionHandler;
  readonly queryUser: UserQuery;
  readonly forgetNodes: (which: readonly string[] | 'all') => Promise<number>;
  readonly log: Logger;
}

/** Synapse sends at most 100 events of at most 64 KiB each in one transaction. */
export const MAX_TRANSACTION_BYTES = 8 * 1024 * 1024;

const notFound =
  (message: string): RequestHandler =>
  (_req, res) =>
    sendMatrixError(res, new MatrixError(404, 'M_NOT_FOUND', message));

/**
 * The application-service API the homeserver calls, served under the spec's /_matrix/app/v1 prefix
 * and the legacy unprefixed paths alike (no redirect: older homeservers do not follow one).
 */
export function appserviceRouter(deps: AppserviceRouteDeps): Router {
  const router = Router();
  const auth = requireHsToken(deps.hsTokenSha256);
  const json = express.json({ limit: MAX_TRANSACTION_BYTES, type: () => true });

  const transaction: RequestHandler<{ txnId: string }> = async (req, res) => {
    const outcome = await deps.onTransaction(req.params.txnId, req.body);
    if (outcome === 'processed') deps.log.trace('transaction acknowledged', { txn_id: req.params.txnId });
    res.json({});
  };
  const user: RequestHandler<{ userId: string }> = async (req, res) => {
    const known = await deps.queryUser(req.params.userId);
    deps.log.debug('user query from the homeserver', { user_id: req.params.userId, known });
    if (known) res.json({});
    else
      sendMatrixError(
        res,
        new MatrixError(404, 'M_NOT_FOUND', 'no such user here: users are created only by registration with a signature'),
      );
  };
  const ping: RequestHandler = (req, res) => {
    const txnId = (req.body as { transaction_id?: unknown } | undefined)?.transaction_id;
    deps.log.info('ping from the homeserver', { transaction_id: typeof txnId === 'string' ? txnId : undefined });
    res.json({});
  };

  // Not the homeserver's API: the operator's `users forget` while the service holds the store (LevelDB admits one
  // process). Authenticated as the homeserver's calls are, with the hs_token run.sh's registration holds.
  // From this machine only, and never through a proxy: a peer elsewhere, or one that forwards, is refused before the
  // token is looked at.
  const fromThisMachineOnly: RequestHandler = (req, res, next) => {
    const peer = req.socket.remoteAddress ?? '';
    const loopback = peer === '::1' || peer.startsWith('127.') || peer.startsWith('::ffff:127.');
    if (loopback && req.headers['x-forwarded-for'] === undefined) {
      next();
      return;
    }
    sendMatrixError(res, new MatrixError(403, 'M_FORBIDDEN', 'users forget is taken from the machine the gate runs on only'));
  };
  const forget: RequestHandler = async (req, res) => {
    const body = req.body as { all?: unknown; localparts?: unknown } | undefined;
    const which = body?.all === true ? 'all' : body?.localparts;
    res.json({ forgotten: await deps.forgetNodes(forgetTarget(which)) });
  };
  router.route('/_regservice/forget').post(fromThisMachineOnly, auth, json, forget).all(methodNotAllowed);

  for (const prefix of ['/_matrix/app/v1', '']) {
    router.route(`${prefix}/transactions/:txnId`).put(auth, json, transaction).all(methodNotAllowed);
    router.route(`${prefix}/users/:userId`).get(auth, user).all(methodNotAllowed);
    router.route(`${prefix}/rooms/:alias`).get(auth, notFound('this service manages no room aliases')).all(methodNotAllowed);
    router.route(`${prefix}/ping`).post(auth, json, ping).all(methodNotAllowed);
    router.route(`${prefix}/thirdparty/protocol/:protocol`).get(auth, notFound('this service bridges no protocol')).all(methodNotAllowed);
    for (const kind of ['user', 'location']) {
      router
        .route(`${prefix}/thirdparty/${kind}{/:protocol}`)
        .get(auth, notFound(`no third-party ${kind}s here`))
        .all(methodNotAllowed);
    }
  }
  return router;
}
