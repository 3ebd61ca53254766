import { commonRefusal, refusalDetail, registeredUserOf } from './registrationAnswer.js';
import { callHomeserver, errcodeOf, homeserverFailed, type HomeserverAnswer } from './homeserverCall.js';
import type { NewNode, RegisteredUser, Registrar } from './registrar.js';
import { createdNothing } from './createdNothing.js';
import { logInAsNode } from './logInAsNode.js';

export interface AppserviceRegistrarOptions {
  readonly homeserverUrl: string;
  readonly serverName: string;
  readonly asToken: string;
  readonly timeoutMs: number;
}

function refusal(answer: HomeserverAnswer): Error {
  const errcode = errcodeOf(answer);
  const detail = refusalDetail(answer);
  const common = commonRefusal(answer);
  if (common !== undefined) return common;
  if (answer.status === 401 || errcode === 'M_UNKNOWN_TOKEN') {
    return homeserverFailed(`it does not know our as_token (${detail}); is registration.yaml in app_service_config_files?`);
  }
  if (errcode === 'M_EXCLUSIVE') {
    return homeserverFailed(`the user is outside our registration's namespace (${detail})`);
  }
  return homeserverFailed(`it refused the registration (${detail})`);
}

/**
 * Registration as the application service (m.login.application_service). Such users have no
 * password, so the node cannot use m.login.password; the answer carries the new user's access token.
 */
export function createAppserviceRegistrar(options: AppserviceRegistrarOptions): Registrar {
  const { asToken: accessToken, timeoutMs, homeserverUrl } = options;
  return {
    async register(node: NewNode): Promise<RegisteredUser> {
      const answer = await callHomeserver({
        method: 'POST',
        url: `${homeserverUrl}/_matrix/client/v3/register`,
        accessToken,
        timeoutMs,
        body: { type: 'm.login.application_service', username: node.localpart, inhibit_login: false },
      });
      if (answer.status !== 200) throw createdNothing(refusal(answer));
      const user = registeredUserOf(answer, options.serverName);
      const { userId } = user;

      const profile = await callHomeserver({
        method: 'PUT',
        url: `${homeserverUrl}/_matrix/client/v3/profile/${encodeURIComponent(userId)}/displayname?user_id=${encodeURIComponent(userId)}`,
        accessToken,
        timeoutMs,
        body: { displayname: node.displayname },
      }).catch((error: unknown) => error as Error);
      const warning =
        profile instanceof Error
          ? `user created but its displayname was not set: ${profile.message}`
          : profile.status === 200
            ? undefined
            : `user created but its displayname was not set (HTTP ${profile.status} ${errcodeOf(profile)})`;

      return { ...user, ...(warning === undefined ? {} : { warning }) };
    },
    logIn: (node) => logInAsNode(options, node.localpart, { asToken: accessToken }),
  };
}
