import express, { type Request, type RequestHandler, type Response } from 'express';
import { parseRegistrationRequest } from '../protocol/registrationRequest.js';
import type { RegistrationHandler } from '../handlers/registrationHandler.js';
import type { Logger } from '../log/logger.js';
import type { RateLimits } from './rateLimits.js';
import { MatrixError } from '../protocol/matrixError.js';
import { sendMatrixError, toMatrixError } from './errorResponses.js';

/** Photon nodes' JSON bodies are a few hundred bytes; 4 KiB leaves room and bounds memory per request. */
export const MAX_BODY_BYTES = 4096;

const LOCALPART = /^0x[0-9a-f]{40}$/;

function outcomeOf(error: MatrixError): string {
  if (error.status === 409) return 'already_registered';
  if (error.status === 403) return 'forbidden';
  if (error.status === 429) return 'rate_limited';
  if (error.status >= 500) return 'homeserver_error';
  return 'invalid';
}

/** POST /register: parse and validate, hand to the handler, answer `{user_id, home_server}` or a Matrix error. */
export function registerRoute(
  handle: RegistrationHandler,
  limits: RateLimits,
  log: Logger,
  count: (outcome: string) => void = () => {},
): RequestHandler {
  // Nodes have sent bodies with and without a JSON content type: parse every body as JSON.
  const parseJson = express.json({ limit: MAX_BODY_BYTES, type: () => true, strict: true });

  async function respond(req: Request, res: Response, parseError: unknown, started: bigint): Promise<void> {
    const claimed = (req.body as { localpart?: unknown } | undefined)?.localpart;
    const localpart = typeof claimed === 'string' && LOCALPART.test(claimed) ? claimed : undefined;
    const durationMs = (): number => Number((process.hrtime.bigint() - started) / 1000n) / 1000;
    try {
      if (parseError !== undefined) throw parseError;
      const request = parseRegistrationRequest(req.body);
      await limits.node(request.localpart);
      const user = await handle(request);
      const outcome = user.passwordReset === true ? 'password_reset' : 'registered';
      count(outcome);
      log.info('registration', { localpart, outcome, status: 200, duration_ms: durationMs() });
      res.json({
        user_id: user.userId,
        home_server: user.homeServer,
        ...(user.accessToken !== undefined ? { access_token: user.accessToken } : {}),
        ...(user.deviceId !== undefined ? { device_id: user.deviceId } : {}),
      });
    } catch (error) {
      const known = toMatrixError(error);
      if (known === undefined) {
        log.error('unexpected error while handling a registration', { reason: (error as Error)?.message ?? String(error) });
      }
      const matrixError = known ?? new MatrixError(500, 'M_UNKNOWN', 'internal error');
      const outcome = known === undefined ? 'internal_error' : outcomeOf(matrixError);
      count(outcome);
      log.info('registration', {
        localpart,
        outcome,
        status: matrixError.status,
        reason: known === undefined ? undefined : matrixError.message,
        duration_ms: durationMs(),
      });
      if (!res.headersSent) sendMatrixError(res, matrixError);
    }
  }

  return (req, res) => {
    const started = process.hrtime.bigint();
    // The per-client limit comes before reading the body, so a flood costs as little as possible.
    limits.client(req.ip ?? '').then(
      () => parseJson(req, res, (parseError?: unknown) => void respond(req, res, parseError, started)),
      (limited: unknown) => void respond(req, res, limited, started),
    );
  };
}
