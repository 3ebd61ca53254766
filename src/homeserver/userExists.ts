import { callHomeserver, errcodeOf, homeserverFailed } from './homeserverCall.js';

export type UserExists = (userId: string) => Promise<boolean>;

/**
 * Whether a user exists on the homeserver, by its profile (every account has one), asked with the
 * as_token so it works whatever the homeserver's profile privacy settings.
 */
export function createUserExists(options: { homeserverUrl: string; asToken: string; timeoutMs: number }): UserExists {
  return async (userId) => {
    const answer = await callHomeserver({
      method: 'GET',
      url: `${options.homeserverUrl}/_matrix/client/v3/profile/${encodeURIComponent(userId)}`,
      accessToken: options.asToken,
      timeoutMs: options.timeoutMs,
    });
    if (answer.status === 200) return true;
    if (answer.status === 404) return false;
    throw homeserverFailed(`cannot tell whether ${userId} exists (HTTP ${answer.status} ${errcodeOf(answer)})`);
  };
}
