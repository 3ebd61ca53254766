import { homeserverRetryLater, type MatrixError } from '../protocol/matrixError.js';
import { commonRefusal, refusalDetail, registeredUserOf } from './registrationAnswer.js';
import { sharedSecretMac } from '../protocol/sharedSecretMac.js';
import { callHomeserver, errcodeOf, errorTextOf, homeserverFailed, type HomeserverAnswer } from './homeserverCall.js';
import type { NewNode, RegisteredUser, Registrar } from './registrar.js';
import { createdNothing } from './createdNothing.js';
import { logInAsNode } from './logInAsNode.js';

export interface SharedSecretRegistrarOptions {
  readonly homeserverUrl: string;
  readonly serverName: string;
  readonly sharedSecret: string;
  readonly timeoutMs: number;
  /** When false (the default), register with inhibit_login so no unused device is left behind. */
  readonly login: boolean;
}

const NONCE_ATTEMPTS = 2;

function isNonceRejection(answer: HomeserverAnswer): boolean {
  return answer.status === 400 && /nonce/i.test(errorTextOf(answer));
}

function retryAfterMs(answer: HomeserverAnswer): number {
  const ms = answer.body.retry_after_ms;
  return typeof ms === 'number' && ms > 0 ? ms : 1000;
}

function refusal(answer: HomeserverAnswer): MatrixError {
  const errcode = errcodeOf(answer);
  const detail = refusalDetail(answer);
  const common = commonRefusal(answer);
  if (common !== undefined) return common;
  if (errcode === 'M_LIMIT_EXCEEDED' || answer.status === 429) {
    return homeserverRetryLater('M_LIMIT_EXCEEDED', 'homeserver is rate-limiting registrations; retry later', retryAfterMs(answer));
  }
  if (errcode === 'M_EXCLUSIVE') {
    return homeserverFailed(
      `an application service holds an exclusive namespace over this user (${detail}); ` +
        'the registration.yaml namespace must be exclusive: false for shared-secret registration',
    );
  }
  if (answer.status === 403) {
    return homeserverFailed(`it rejected our shared secret (${detail}); check registration_shared_secret`);
  }
  return homeserverFailed(`it refused the registration (${detail})`);
}

/** Synapse's shared-secret registration: GET a nonce, then POST the user with an HMAC. */
export function createSharedSecretRegistrar(options: SharedSecretRegistrarOptions): Registrar {
  const endpoint = `${options.homeserverUrl}/_synapse/admin/v1/register`;
  const timeoutMs = options.timeoutMs;

  async function fetchNonce(): Promise<string> {
    const answer = await callHomeserver({ method: 'GET', url: endpoint, timeoutMs });
    if (answer.status === 200 && typeof answer.body.nonce === 'string') return answer.body.nonce;
    if (answer.status === 400 || answer.status === 404) {
      throw homeserverFailed(
        `shared-secret registration is not enabled (${errorTextOf(answer) || `HTTP ${answer.status}`}); ` +
          'set registration_shared_secret in homeserver.yaml',
      );
    }
    throw homeserverFailed(`no nonce from ${endpoint} (HTTP ${answer.status})`);
  }

  return {
    async register(node: NewNode): Promise<RegisteredUser> {
      for (let attempt = 1; ; attempt++) {
        // Whatever becomes of the nonce's request, no account comes of it.
        const nonce = await fetchNonce().catch((error: Error) => {
          throw createdNothing(error);
        });
        const mac = sharedSecretMac(options.sharedSecret, {
          nonce,
          username: node.localpart,
          password: node.password,
          admin: false,
        });
        const answer = await callHomeserver({
          method: 'POST',
          url: endpoint,
          timeoutMs,
          body: {
            nonce,
            username: node.localpart,
            password: node.password,
            displayname: node.displayname,
            admin: false,
            mac,
            inhibit_login: !options.login,
          },
        });
        if (answer.status === 200) return registeredUserOf(answer, options.serverName);
        if (isNonceRejection(answer) && attempt < NONCE_ATTEMPTS) continue;
        throw createdNothing(refusal(answer));
      }
    },
    // Its password is its signature: a completed registration answers with a token, as a direct one does.
    ...(options.login ? { logIn: (node: NewNode) => logInAsNode(options, node.localpart, { password: node.password }) } : {}),
  };
}
