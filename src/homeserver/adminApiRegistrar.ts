import { userInUse } from '../protocol/matrixError.js';
import { userIdFor } from '../protocol/nodeId.js';
import { callHomeserver, homeserverFailed, type HomeserverAnswer } from './homeserverCall.js';
import { refusalDetail } from './registrationAnswer.js';
import type { NewNode, RegisteredUser, Registrar } from './registrar.js';
import { createdNothing } from './createdNothing.js';

export interface AdminApiRegistrarOptions {
  readonly homeserverUrl: string;
  readonly serverName: string;
  readonly adminToken: string;
  readonly timeoutMs: number;
  /** Reset the password of a user that already exists instead of answering 409. */
  readonly allowPasswordReset: boolean;
}

function refused(what: string, answer: HomeserverAnswer): Error {
  const detail = refusalDetail(answer);
  if (answer.status === 401 || answer.status === 403) {
    return homeserverFailed(`it refused our admin token while ${what} (${detail}); --admin-token-file must hold a server admin's token`);
  }
  return homeserverFailed(`it refused ${what} (${detail})`);
}

/** Synapse's admin API: PUT /_synapse/admin/v2/users/{userId} sets password and displayname. */
export function createAdminApiRegistrar(options: AdminApiRegistrarOptions): Registrar {
  const { adminToken: accessToken, timeoutMs } = options;
  return {
    async register(node: NewNode): Promise<RegisteredUser> {
      const userId = userIdFor(node.localpart, options.serverName);
      const url = `${options.homeserverUrl}/_synapse/admin/v2/users/${encodeURIComponent(userId)}`;
      // Nothing is created while the user is looked up.
      const existing = await callHomeserver({ method: 'GET', url, accessToken, timeoutMs }).catch((error: Error) => {
        throw createdNothing(error);
      });
      if (existing.status !== 200 && existing.status !== 404) throw createdNothing(refused('looking the user up', existing));
      const exists = existing.status === 200;
      if (exists && !options.allowPasswordReset) throw createdNothing(userInUse('this node is already registered on the homeserver'));

      const answer = await callHomeserver({
        method: 'PUT',
        url,
        accessToken,
        timeoutMs,
        body: { password: node.password, displayname: node.displayname, admin: false },
      });
      if (answer.status !== 200 && answer.status !== 201)
        throw createdNothing(refused(exists ? 'the password reset' : 'the registration', answer));
      const name = typeof answer.body.name === 'string' ? answer.body.name : userId;
      return { userId: name, homeServer: options.serverName, ...(exists ? { passwordReset: true } : {}) };
    },
  };
}
