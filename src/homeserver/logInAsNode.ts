import { homeserverRetryLater } from '../protocol/matrixError.js';
import { callHomeserver, errcodeOf, homeserverFailed } from './homeserverCall.js';
import { refusalDetail, registeredUserOf } from './registrationAnswer.js';
import type { RegisteredUser } from './registrar.js';

/** The device a completed registration's login uses. */
export const COMPLETION_DEVICE = 'MATRIX_REGSERVICE';

export interface LogInOptions {
  readonly homeserverUrl: string;
  readonly serverName: string;
  readonly timeoutMs: number;
}

/**
 * Logs in as a node's existing account, for an answer that must carry a token as a direct registration's does (a
 * registration completed after an interruption): with the as_token (`m.login.application_service`: such users have
 * no password), or with the node's password, its signature.
 */
export async function logInAsNode(
  options: LogInOptions,
  localpart: string,
  how: { readonly asToken: string } | { readonly password: string },
): Promise<RegisteredUser> {
  const identifier = { type: 'm.id.user', user: localpart };
  // One device for every completion of this node's registration: retries never pile up devices.
  const device = { device_id: COMPLETION_DEVICE };
  const answer = await callHomeserver({
    method: 'POST',
    url: `${options.homeserverUrl}/_matrix/client/v3/login`,
    timeoutMs: options.timeoutMs,
    ...('asToken' in how
      ? { accessToken: how.asToken, body: { type: 'm.login.application_service', identifier, ...device } }
      : { body: { type: 'm.login.password', identifier, password: how.password, ...device } }),
  });
  // Synapse's own login rate limit (every completion comes from this service's address): the node retries later.
  if (answer.status === 429 || errcodeOf(answer) === 'M_LIMIT_EXCEEDED') {
    const ms = typeof answer.body.retry_after_ms === 'number' ? answer.body.retry_after_ms : 1000;
    throw homeserverRetryLater('M_LIMIT_EXCEEDED', 'the homeserver is rate-limiting logins; retry later', ms);
  }
  if (answer.status !== 200) {
    throw homeserverFailed(`it refused to log the node in (${refusalDetail(answer)})`);
  }
  return registeredUserOf(answer, options.serverName);
}
