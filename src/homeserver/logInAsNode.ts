import { callHomeserver, homeserverFailed } from './homeserverCall.js';
import { refusalDetail, registeredUserOf } from './registrationAnswer.js';
import type { RegisteredUser } from './registrar.js';

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
  const answer = await callHomeserver({
    method: 'POST',
    url: `${options.homeserverUrl}/_matrix/client/v3/login`,
    timeoutMs: options.timeoutMs,
    ...('asToken' in how
      ? { accessToken: how.asToken, body: { type: 'm.login.application_service', identifier } }
      : { body: { type: 'm.login.password', identifier, password: how.password } }),
  });
  if (answer.status !== 200) {
    throw homeserverFailed(`it refused to log the node in (${refusalDetail(answer)})`);
  }
  return registeredUserOf(answer, options.serverName);
}
