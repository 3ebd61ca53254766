import type { IncomingMessage, ServerResponse } from 'node:http';
import express, { type Express } from 'express';
import type { TransactionHandler } from '../handlers/transactionHandler.js';
import type { UserQuery } from '../handlers/userQuery.js';
import type { Logger } from '../log/logger.js';
import { appserviceRouter } from './appserviceRoutes.js';
import { errorHandler, methodNotAllowed, missingHost, unrecognized, unrecognizedRequest } from './errorResponses.js';
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

/** The Express routes, below the base path: everything but the /register hot path (see createRequestListener). */
function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.post('/register', deps.registerRoute);
  app.all('/register', methodNotAllowed);
  app.use(appserviceRouter(deps));
  app.use(unrecognized);
  app.use(errorHandler(deps.log));
  return app;
}

/**
 * The server's request listener. The base path (from the registration url, any characters) is matched and cut off
 * here, so that Express never compiles it as a route pattern; POST <basePath>/register goes straight to its handler,
 * the hot path every forged request takes; everything else below the base path goes through Express.
 */
export function createRequestListener(deps: AppDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const app = createApp(deps);
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
    if (req.method === 'POST' && (rest === '/register' || rest.startsWith('/register?'))) {
      deps.registerRoute(req, res);
      return;
    }
    req.url = rest.startsWith('/') ? rest : `/${rest}`;
    app(req, res);
  };
}
