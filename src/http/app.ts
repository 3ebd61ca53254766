import type { IncomingMessage, ServerResponse } from 'node:http';
import express, { Router, type Express } from 'express';
import type { TransactionHandler } from '../handlers/transactionHandler.js';
import type { UserQuery } from '../handlers/userQuery.js';
import type { Logger } from '../log/logger.js';
import { appserviceRouter } from './appserviceRoutes.js';
import { errorHandler, methodNotAllowed, unrecognized } from './errorResponses.js';
import type { RegisterRoute } from './registerRoute.js';

export interface AppDeps {
  readonly basePath: string;
  readonly hsToken: string;
  readonly registerRoute: RegisterRoute;
  readonly onTransaction: TransactionHandler;
  readonly queryUser: UserQuery;
  readonly log: Logger;
}

/** The Express routes: everything but the /register hot path (see createRequestListener). */
function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  const routes = Router();
  routes.post('/register', deps.registerRoute);
  routes.all('/register', methodNotAllowed);
  routes.use(appserviceRouter(deps));

  app.use(deps.basePath, routes);
  app.use(unrecognized);
  app.use(errorHandler(deps.log));
  return app;
}

/**
 * The server's request listener: POST <basePath>/register goes straight to its handler, the hot path
 * every forged request takes; everything else goes through Express.
 */
export function createRequestListener(deps: AppDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const app = createApp(deps);
  const registerPath = `${deps.basePath}/register`;
  return (req, res) => {
    if (req.method === 'POST' && req.url === registerPath) deps.registerRoute(req, res);
    else app(req, res);
  };
}
