import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TransactionHandler } from '../handlers/transactionHandler.js';
import type { UserQuery } from '../handlers/userQuery.js';
import type { Logger } from '../log/logger.js';
import { createAppserviceRoutes } from './appserviceRoutes.js';
import { methodNotAllowed, missingHost, unrecognizedRequest } from './errorResponses.js';
import type { RegisterRoute } from './registerRoute.js';

export interface AppDeps {
  readonly basePath: string;
  /** SHA-256 of the hs_token, hex (hsTokenDigest). */
  readonly hsTokenSha256: string;
  readonly registerRoute: RegisterRoute;
  readonly onTransaction: TransactionHandler;
  readonly queryUser: UserQuery;
  /** The operator's `users forget` through the running service (hs_token-authenticated, never routed by nginx). */
  readonly forgetNodes: (which: readonly string[] | 'all') => Promise<number>;
  readonly log: Logger;
}

/**
 * The server's request listener. The base path (from the registration url, any characters) is matched as text and
 * cut off; POST <basePath>/register goes straight to its handler, the hot path every forged request takes; everything
 * else below the base path goes to the application-service routes.
 */
export function createRequestListener(deps: AppDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const appservice = createAppserviceRoutes(deps);
  const { basePath } = deps;
  return (req, res) => {
    if (req.headers.host === undefined && req.httpVersion === '1.1') {
      missingHost(res);
      return;
    }
    const url = req.url ?? '/';
    const next = url.charAt(basePath.length);
    if (!url.startsWith(basePath) || (next !== '/' && next !== '?' && next !== '')) {
      unrecognizedRequest(res);
      return;
    }
    const rest = url.slice(basePath.length);
    const queryAt = rest.indexOf('?');
    const path = queryAt === -1 ? rest : rest.slice(0, queryAt);
    // As the router below matches: letter case aside, a trailing slash allowed.
    if (path === '/register' || /^\/register\/?$/i.test(path)) {
      if (req.method === 'POST') deps.registerRoute(req, res);
      else methodNotAllowed(req, res);
      return;
    }
    appservice(req, res, path === '' ? '/' : path, queryAt === -1 ? '' : rest.slice(queryAt + 1));
  };
}
