import { callHomeserver, errcodeOf, errorTextOf, homeserverFailed } from './homeserverCall.js';

export type UserExists = (userId: string) => Promise<boolean>;

/**
 * Whether a user exists on the homeserver: the application service asks `whoami` as the user (`?user_id=`, our
 * namespace covers every node). Synapse answers 200 when the user exists and 403 "Application service has not
 * registered this user" when not, whatever its profile privacy settings (with require_auth_for_profile_requests
 * and limit_profile_requests_to_users_who_share_rooms on, a profile lookup is 403 for every user). Not a login as
 * the node: that would spend the login rate limit of our address.
 */
export function createUserExists(options: { homeserverUrl: string; asToken: string; timeoutMs: number }): UserExists {
  return async (userId) => {
    const answer = await callHomeserver({
      method: 'GET',
      url: `${options.homeserverUrl}/_matrix/client/v3/account/whoami?user_id=${encodeURIComponent(userId)}`,
      accessToken: options.asToken,
      timeoutMs: options.timeoutMs,
    });
    if (answer.status === 200) return true;
    if (answer.status === 403 && /has not registered this user/i.test(errorTextOf(answer))) return false;
    throw homeserverFailed(
      `cannot tell whether ${userId} exists (HTTP ${answer.status} ${errcodeOf(answer)} ${errorTextOf(answer)})`.trim(),
    );
  };
}
