import type { PrivateKey } from '../protocol/privateKey.js';
import { signRegistration, type RegistrationBody } from '../protocol/signRegistration.js';

export { signRegistration, type PrivateKey, type RegistrationBody };

export interface RegisterNodeOptions {
  /** The node's secp256k1 private key: 32 bytes, or 64 hex characters with an optional 0x. */
  readonly privateKey: PrivateKey;
  /** The homeserver's public URL; registration goes to <homeserverUrl>/regapp/1/register, the login to the homeserver. */
  readonly homeserverUrl: string;
  /**
   * The service's own base URL (registration.yaml's url, e.g. http://127.0.0.1:8009/regapp/1), for a service that is
   * not behind the homeserver's URL (no nginx in front, as in the README's quick start); registration goes to <gateUrl>/register.
   */
  readonly gateUrl?: string | undefined;
  /** The homeserver's server_name (default: the URL's host name). */
  readonly serverName?: string;
  readonly timeoutMs?: number;
}

export interface RegisteredNode {
  readonly userId: string;
  readonly accessToken: string;
  readonly deviceId: string;
}

export class RegistrationFailed extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly errcode: string,
  ) {
    super(message);
    this.name = 'RegistrationFailed';
  }
}

async function postJson(url: string, body: unknown, timeoutMs: number): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await response.text();
  try {
    return { status: response.status, body: JSON.parse(text) as Record<string, unknown> };
  } catch {
    return { status: response.status, body: { error: text.slice(0, 200) } };
  }
}

/**
 * Does what a Photon node does: registers through <homeserver>/regapp/1/register (an existing
 * account, 409, is fine), then logs in with m.login.password and the signature password.
 */
/** A field of an answer as text: strings as they are, anything else empty. */
const textOf = (value: unknown): string => (typeof value === 'string' ? value : '');

export async function registerNode(options: RegisterNodeOptions): Promise<RegisteredNode> {
  const base = options.homeserverUrl.replace(/\/+$/, '');
  const serverName = options.serverName ?? new URL(base).host;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const body = signRegistration(options.privateKey, serverName);
  const gate = options.gateUrl === undefined ? `${base}/regapp/1` : options.gateUrl.replace(/\/+$/, '');
  const registered = await postJson(`${gate}/register`, body, timeoutMs);
  if (registered.status !== 200 && !(registered.status === 409 && registered.body.errcode === 'M_USER_IN_USE')) {
    throw new RegistrationFailed(
      `registration failed: HTTP ${registered.status} ${textOf(registered.body.errcode)} ${textOf(registered.body.error)}`.trim(),
      registered.status,
      textOf(registered.body.errcode),
    );
  }
  const login = await postJson(
    `${base}/_matrix/client/v3/login`,
    { type: 'm.login.password', identifier: { type: 'm.id.user', user: body.localpart }, password: body.password },
    timeoutMs,
  );
  if (login.status !== 200 || typeof login.body.access_token !== 'string') {
    throw new RegistrationFailed(
      `login failed: HTTP ${login.status} ${textOf(login.body.errcode)} ${textOf(login.body.error)}`.trim(),
      login.status,
      textOf(login.body.errcode),
    );
  }
  return { userId: String(login.body.user_id), accessToken: login.body.access_token, deviceId: textOf(login.body.device_id) };
}
