import express, { Router, type Express } from 'express';
import type { RegistrationHandler } from '../handlers/registrationHandler.js';
import type { RateLimits } from './rateLimits.js';
import type { TransactionHandler } from '../handlers/transactionHandler.js';
import type { UserQuery } from '../handlers/userQuery.js';
import type { Logger } from '../log/logger.js';
import { appserviceRouter } from './appserviceRoutes.js';
import { errorHandler, methodNotAllowed, unrecognized } from './errorResponses.js';
import { registerRoute } from './registerRoute.js';

export interface AppDeps {
  readonly basePath: string;
  readonly hsToken: string;
  readonly register: RegistrationHandler;
  readonly limits: RateLimits;
  /** Express "trust proxy": whose X-Forwarded-For names the client. */
  readonly trustedProxies: string;
  readonly onTransaction: TransactionHandler;
  readonly queryUser: UserQuery;
  readonly log: Logger;
  /** Counts each registration outcome (metrics). */
  readonly countRegistration?: (outcome: string) => void;
}

export function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('trust proxy', deps.trustedProxies);

  const routes = Router();
  routes.post('/register', registerRoute(deps.register, deps.limits, deps.log, deps.countRegistration));
  routes.all('/register', methodNotAllowed);
  routes.use(appserviceRouter(deps));

  app.use(deps.basePath, routes);
  app.use(unrecognized);
  app.use(errorHandler(deps.log));
  return app;
}
