import { type MatrixError, userInUse } from '../protocol/matrixError.js';
import { errcodeOf, errorTextOf, homeserverFailed, type HomeserverAnswer } from './homeserverCall.js';
import type { RegisteredUser } from './registrar.js';

/** The errcode (or HTTP status) and error text of a refusal, for messages: `M_FORBIDDEN Invalid shared secret`. */
export function refusalDetail(answer: HomeserverAnswer): string {
  const text = errorTextOf(answer);
  return `${errcodeOf(answer) || `HTTP ${answer.status}`}${text ? ` ${text}` : ''}`;
}

/** The refusal every backend maps the same way (the user exists: 409), or undefined for a backend's own. */
export function commonRefusal(answer: HomeserverAnswer): MatrixError | undefined {
  return errcodeOf(answer) === 'M_USER_IN_USE' ? userInUse('this node is already registered on the homeserver') : undefined;
}

/** The user a registration's 200 answer names, with its login when there is one; never success without a user_id. */
export function registeredUserOf(answer: HomeserverAnswer, serverName: string): RegisteredUser {
  const { user_id: userId, home_server: homeServer, access_token: accessToken, device_id: deviceId } = answer.body;
  if (typeof userId !== 'string' || userId === '') throw homeserverFailed('it answered 200 without a user_id');
  return {
    userId,
    homeServer: typeof homeServer === 'string' && homeServer !== '' ? homeServer : serverName,
    ...(typeof accessToken === 'string' ? { accessToken } : {}),
    ...(typeof deviceId === 'string' ? { deviceId } : {}),
  };
}
