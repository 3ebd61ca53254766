import { Router, type RequestHandler } from 'express';
import { requireHsToken } from './hsTokenAuth.js';

const acknowledge: RequestHandler = (_req, res) => {
  res.json({});
};

/**
 * The application-service API the homeserver calls, under the spec's /_matrix/app/v1 prefix
 * and the legacy unprefixed paths. This service needs nothing from transactions yet.
 */
export function appserviceRouter(hsToken: string): Router {
  const router = Router();
  const auth = requireHsToken(hsToken);
  for (const prefix of ['/_matrix/app/v1', '']) {
    router.put(`${prefix}/transactions/:txnId`, auth, acknowledge);
  }
  return router;
}
