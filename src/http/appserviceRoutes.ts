import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseQuery } from 'node:querystring';
import type { TransactionHandler } from '../handlers/transactionHandler.js';
import type { UserQuery } from '../handlers/userQuery.js';
import type { Logger } from '../log/logger.js';
import { MatrixError } from '../protocol/matrixError.js';
import { forgetTarget } from '../protocol/forgetTarget.js';
import { answerFailure, methodNotAllowed, sendJson, sendMatrixError, unrecognizedRequest } from './errorResponses.js';
import { hsTokenCheck } from './hsTokenAuth.js';
import { readJsonBody } from './readJsonBody.js';

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

/** One route's request, once matched: its path parameter (decoded), and its body when the route reads one. */
interface Matched {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly param: string;
  readonly body: unknown;
}

interface Route {
  /** The path below the base path; its one parameter, if any, is a capture group of one segment. */
  readonly path: RegExp;
  /** The one method served (HEAD is served as GET); any other is 405. */
  readonly method: 'GET' | 'PUT' | 'POST';
  /** Whether the route reads a JSON body (once the request is let through). */
  readonly readsBody: boolean;
  /** Checked before the token is looked at. */
  readonly admit?: (req: IncomingMessage) => MatrixError | undefined;
  readonly handle: (matched: Matched) => Promise<void> | void;
}

const notFound = (message: string) => (matched: Matched) => sendMatrixError(matched.res, new MatrixError(404, 'M_NOT_FOUND', message));

/** A route's path: literal text, `:param` (one segment), and an optional trailing slash; case-insensitive. */
function pathPattern(path: string): RegExp {
  const escaped = path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/:[a-zA-Z]+/, '([^/]+)');
  return new RegExp(`^${escaped}/?$`, 'i');
}

/**
 * The application-service API the homeserver calls, served under the spec's /_matrix/app/v1 prefix and the legacy
 * unprefixed paths alike (no redirect: older homeservers do not follow one), and the operator's forget route. The
 * listener takes `path` below the base path, without its query; what matches no route is 404 M_UNRECOGNIZED, another
 * method on a route 405, both before the hs_token is looked at.
 */
export function createAppserviceRoutes(
  deps: AppserviceRouteDeps,
): (req: IncomingMessage, res: ServerResponse, path: string, query: string) => void {
  const checkToken = hsTokenCheck(deps.hsTokenSha256);
  const fail = answerFailure(deps.log);

  // Not the homeserver's API: the operator's `users forget` while the service holds the store (LevelDB admits one
  // process). Authenticated as the homeserver's calls are, with the hs_token run.sh's registration holds.
  // From this machine only, and never through a proxy: a peer elsewhere, or one that forwards, is refused before the
  // token is looked at.
  const fromThisMachineOnly = (req: IncomingMessage): MatrixError | undefined => {
    const peer = req.socket.remoteAddress ?? '';
    const loopback = peer === '::1' || peer.startsWith('127.') || peer.startsWith('::ffff:127.');
    if (loopback && req.headers['x-forwarded-for'] === undefined) return undefined;
    return new MatrixError(403, 'M_FORBIDDEN', 'users forget is taken from the machine the gate runs on only');
  };

  const routes: Route[] = [
    {
      path: pathPattern('/_regservice/forget'),
      method: 'POST',
      readsBody: true,
      admit: fromThisMachineOnly,
      handle: async ({ res, body }) => {
        const asked = body as { all?: unknown; localparts?: unknown } | undefined;
        const which = asked?.all === true ? 'all' : asked?.localparts;
        sendJson(res, 200, { forgotten: await deps.forgetNodes(forgetTarget(which)) });
      },
    },
  ];
  for (const prefix of ['/_matrix/app/v1', '']) {
    routes.push(
      {
        path: pathPattern(`${prefix}/transactions/:txnId`),
        method: 'PUT',
        readsBody: true,
        handle: async ({ res, param, body }) => {
          const outcome = await deps.onTransaction(param, body);
          if (outcome === 'processed') deps.log.trace('transaction acknowledged', { txn_id: param });
          sendJson(res, 200, {});
        },
      },
      {
        path: pathPattern(`${prefix}/users/:userId`),
        method: 'GET',
        readsBody: false,
        handle: async ({ res, param }) => {
          const known = await deps.queryUser(param);
          deps.log.debug('user query from the homeserver', { user_id: param, known });
          if (known) sendJson(res, 200, {});
          else
            sendMatrixError(
              res,
              new MatrixError(404, 'M_NOT_FOUND', 'no such user here: users are created only by registration with a signature'),
            );
        },
      },
      {
        path: pathPattern(`${prefix}/rooms/:alias`),
        method: 'GET',
        readsBody: false,
        handle: notFound('this service manages no room aliases'),
      },
      {
        path: pathPattern(`${prefix}/ping`),
        method: 'POST',
        readsBody: true,
        handle: ({ res, body }) => {
          const txnId = (body as { transaction_id?: unknown } | undefined)?.transaction_id;
          deps.log.info('ping from the homeserver', { transaction_id: typeof txnId === 'string' ? txnId : undefined });
          sendJson(res, 200, {});
        },
      },
      {
        path: pathPattern(`${prefix}/thirdparty/protocol/:protocol`),
        method: 'GET',
        readsBody: false,
        handle: notFound('this service bridges no protocol'),
      },
    );
    for (const kind of ['user', 'location']) {
      const handle = notFound(`no third-party ${kind}s here`);
      routes.push(
        { path: pathPattern(`${prefix}/thirdparty/${kind}`), method: 'GET', readsBody: false, handle },
        { path: pathPattern(`${prefix}/thirdparty/${kind}/:protocol`), method: 'GET', readsBody: false, handle },
      );
    }
  }

  const serve = async (route: Route, req: IncomingMessage, res: ServerResponse, encoded: string, query: string): Promise<void> => {
    const refused = route.admit?.(req) ?? checkToken(req, parseQuery(query));
    if (refused !== undefined) {
      sendMatrixError(res, refused);
      return;
    }
    let param: string;
    try {
      param = decodeURIComponent(encoded);
    } catch {
      sendMatrixError(res, new MatrixError(400, 'M_UNKNOWN', 'a path segment is not valid percent-encoding'));
      return;
    }
    const body = route.readsBody ? await readJsonBody(req, MAX_TRANSACTION_BYTES) : undefined;
    await route.handle({ req, res, param, body });
  };

  return (req, res, path, query) => {
    for (const route of routes) {
      const match = route.path.exec(path);
      if (match === null) continue;
      const method = req.method === 'HEAD' ? 'GET' : req.method;
      if (method !== route.method) {
        methodNotAllowed(req, res);
        return;
      }
      serve(route, req, res, match[1] ?? '', query).catch((error: unknown) => fail(error, res));
      return;
    }
    unrecognizedRequest(res);
  };
}
