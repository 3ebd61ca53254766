import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseRegistrationRequest, type RegistrationVerifier } from '../protocol/registrationRequest.js';
import type { RegistrationHandler } from '../handlers/registrationHandler.js';
import type { Logger } from '../log/logger.js';
import { HomeserverError, MatrixError, StoreUnavailableError } from '../protocol/matrixError.js';
import { isNodeLocalpart } from '../protocol/nodeId.js';
import { sendJson, sendMatrixError, toMatrixError } from './errorResponses.js';
import { readJsonBody } from './readJsonBody.js';

/** Photon nodes' JSON bodies are a few hundred bytes; 4 KiB leaves room and bounds memory per request. */
export const MAX_BODY_BYTES = 4096;

/** The outcome an answer is counted and logged under: by the error's kind and errcode, not its status. */
function outcomeOf(error: MatrixError): string {
  if (error instanceof HomeserverError) return 'homeserver_error';
  if (error instanceof StoreUnavailableError) return 'store_unavailable';
  switch (error.errcode) {
    case 'M_USER_IN_USE':
      return 'already_registered';
    case 'M_FORBIDDEN':
      return 'forbidden';
    case 'M_LIMIT_EXCEEDED':
      return 'rate_limited';
    default:
      // Our own 503: too many registrations waiting for the homeserver, or one of this node's in progress on another gate.
      return error.status === 503 ? 'busy' : 'invalid';
  }
}

/** Outcomes that stay one log line each; every other answer is a refusal, counted and summarized. */
const LOGGED_EACH = new Set(['registered', 'password_reset', 'homeserver_error', 'store_unavailable', 'internal_error']);

export type RegisterRoute = (req: IncomingMessage, res: ServerResponse) => void;

export interface RegisterRouteDeps {
  /** The client's rate-limit key (its address, or IPv6 network). */
  readonly clientKey: (req: IncomingMessage) => string;
  /** Charges the client's allowance (throws 429); undefined when there is no per-client limit. */
  readonly limitClient: ((key: string) => Promise<void>) | undefined;
  readonly verify: RegistrationVerifier;
  /** Registers a node whose signatures verified. */
  readonly register: RegistrationHandler;
  readonly log: Logger;
  /** A refused request (invalid, forbidden, rate-limited, already registered, …) from `client`. */
  readonly refused: (outcome: string, client: string) => void;
  readonly count?: (outcome: string) => void;
}

/**
 * POST /register, on plain node:http because it is the hot path every forged request takes:
 * rate-limit the client, read, validate and verify, hand the verified node on, answer
 * `{user_id, home_server}` or a Matrix error.
 */
export function registerRoute(deps: RegisterRouteDeps): RegisterRoute {
  const { log, limitClient, verify, register, refused } = deps;
  const count = deps.count ?? (() => {});

  async function respond(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    const client = deps.clientKey(req);
    let localpart: string | undefined;
    const durationMs = (): number => Number((process.hrtime.bigint() - started) / 1000n) / 1000;
    try {
      // The per-client limit comes before reading the body, so a flood costs as little as possible.
      if (limitClient !== undefined) await limitClient(client);
      const body = await readJsonBody(req, MAX_BODY_BYTES);
      const claimed = (body as { localpart?: unknown } | undefined)?.localpart;
      localpart = isNodeLocalpart(claimed) ? claimed : undefined;
      const request = parseRegistrationRequest(body);
      verify(request);
      const user = await register(request);
      const outcome = user.passwordReset === true ? 'password_reset' : 'registered';
      count(outcome);
      log.info('registration', { localpart, outcome, status: 200, duration_ms: durationMs() });
      sendJson(res, 200, {
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
      const fields = {
        localpart,
        client,
        outcome,
        status: matrixError.status,
        reason: known === undefined ? undefined : matrixError.message,
        duration_ms: durationMs(),
      };
      if (LOGGED_EACH.has(outcome)) {
        log.info('registration', fields);
      } else {
        refused(outcome, client);
        log.debug('registration', fields);
      }
      if (res.headersSent) return;
      // A body we stopped reading must not be parsed as the next request on this connection.
      if (matrixError.status === 413) res.shouldKeepAlive = false;
      sendMatrixError(res, matrixError);
    }
  }

  return (req, res) => void respond(req, res);
}
