import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseRegistrationRequest, type RegistrationVerifier } from '../protocol/registrationRequest.js';
import type { NewNode, RegisteredUser } from '../homeserver/registrar.js';
import { isLoggedEach, outcomeOfError, outcomeOfUser, type Outcome } from '../handlers/registrationOutcome.js';
import type { Logger } from '../log/logger.js';
import { MatrixError } from '../protocol/matrixError.js';
import { isNodeLocalpart } from '../protocol/nodeId.js';
import { sendJson, sendMatrixError, toMatrixError } from './errorResponses.js';
import { readJsonBody } from './readJsonBody.js';
import { CLIENT_ADDRESS_HEADER, type ClientOfRequest } from './clientKey.js';

/** Photon nodes' JSON bodies are a few hundred bytes; 4 KiB leaves room and bounds memory per request. */
export const MAX_BODY_BYTES = 4096;

export type RegisterRoute = (req: IncomingMessage, res: ServerResponse) => void;

export interface RegisterRouteDeps {
  /** The client of a request (its rate-limit key: its address, or IPv6 network), by the client-address rule. */
  readonly clientKey: (req: IncomingMessage) => ClientOfRequest;
  /** A request came through a trusted proxy that named no client: it counts as the proxy. */
  readonly unnamedClient?: () => void;
  /** A local peer that is not a trusted proxy sent X-Forwarded-For. */
  readonly untrustedForwarder?: (peer: string) => void;
  /** Charges the client's allowance (throws 429); undefined when there is no per-client limit. */
  readonly limitClient: ((key: string) => Promise<void>) | undefined;
  readonly verify: RegistrationVerifier;
  /**
   * Registers a node whose signatures verified. From here on the primary decides, and it writes the outcome's log
   * line (or counts the refusal): this route logs only what ends before it.
   */
  readonly register: (
    node: NewNode,
    request: { readonly client: string; readonly address: string; readonly elapsedMs: number },
  ) => Promise<RegisteredUser>;
  /** Whether the node's 200 went to its connection whole (reached), or the client was gone first. */
  readonly delivered: (localpart: string, reached: boolean) => void;
  readonly log: Logger;
  /** A request refused before it reached the primary (invalid, forbidden, rate-limited, …), from `client`. */
  readonly refused: (outcome: Outcome, client: string) => void;
  /** Whether a refusal's own line may be written now (the service writes a few a second; the rest are counted). */
  readonly refusalLine: () => boolean;
  /** Whether the answer refusing `req` closes its connection, so that the client's next one may go to another process. */
  readonly closeAfterRefusal?: (req: IncomingMessage) => boolean;
  readonly count?: (outcome: Outcome) => void;
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
    const started = performance.now();
    const { key: client, address, unnamedByProxy, untrustedForwarder } = deps.clientKey(req);
    if (unnamedByProxy) deps.unnamedClient?.();
    if (untrustedForwarder !== undefined) deps.untrustedForwarder?.(untrustedForwarder);
    // Which client the service took this request for, by the client-address rule: doctor checks the proxy with it.
    res.setHeader(CLIENT_ADDRESS_HEADER, client);
    let localpart: string | undefined;
    let handedOver = false;
    try {
      // The per-client limit comes before reading the body, so a flood costs as little as possible.
      if (limitClient !== undefined) await limitClient(client);
      const body = await readJsonBody(req, MAX_BODY_BYTES);
      const claimed = (body as { localpart?: unknown } | undefined)?.localpart;
      localpart = isNodeLocalpart(claimed) ? claimed : undefined;
      const request = parseRegistrationRequest(body);
      verify(request);
      handedOver = true;
      const user = await register(request, { client, address, elapsedMs: performance.now() - started });
      count(outcomeOfUser(user));
      // 'finish': the whole answer went to the connection. A client that hung up first gets 'close' alone, and the
      // node's record stays unanswered: its next request gets this 200 again (so it does when this worker dies now).
      // An answer waiting for its turn behind earlier ones on the connection has no socket yet (res.socket is null):
      // the request's socket tells whether the client is still there.
      const socket = req.socket;
      if (res.destroyed || socket.destroyed) {
        deps.delivered(request.localpart, false);
        return;
      }
      let settled = false;
      const settle = (reached: boolean): void => {
        if (settled) return;
        settled = true;
        socket.off('close', lost);
        deps.delivered(request.localpart, reached);
      };
      const lost = (): void => settle(false);
      res.once('finish', () => settle(true));
      res.once('close', lost);
      socket.once('close', lost);
      sendJson(res, 200, {
        user_id: user.userId,
        home_server: user.homeServer,
        ...(user.accessToken !== undefined ? { access_token: user.accessToken } : {}),
        ...(user.deviceId !== undefined ? { device_id: user.deviceId } : {}),
      });
    } catch (error) {
      const known = toMatrixError(error);
      const outcome = outcomeOfError(known);
      count(outcome);
      if (!handedOver) {
        const matrixError = known ?? new MatrixError(500, 'M_UNKNOWN', 'internal error');
        const fields = {
          localpart,
          client,
          outcome,
          status: matrixError.status,
          reason: known === undefined ? `unexpected: ${(error as Error)?.message ?? String(error)}` : matrixError.message,
          duration_ms: Math.round((performance.now() - started) * 1000) / 1000,
        };
        if (outcome === 'internal_error') log.error('registration', fields);
        else if (isLoggedEach(outcome)) log.info('registration', fields);
        else {
          refused(outcome, client);
          if (log.enabled('debug') && deps.refusalLine()) log.debug('registration', fields);
        }
      }
      if (res.headersSent) return;
      const matrixError = known ?? new MatrixError(500, 'M_UNKNOWN', 'internal error');
      // A body we stopped reading must not be parsed as the next request on this connection.
      if (matrixError.status === 413) res.shouldKeepAlive = false;
      if (!handedOver && deps.closeAfterRefusal?.(req) === true) res.shouldKeepAlive = false;
      sendMatrixError(res, matrixError);
    }
  }

  return (req, res) => void respond(req, res);
}
