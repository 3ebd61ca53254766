import { callHomeserver, errcodeOf, errorTextOf } from './homeserverCall.js';

export type PingResult = { readonly ok: true; readonly durationMs: number } | { readonly ok: false; readonly reason: string };

/** Our request to the homeserver failed (it is down or the url is wrong): the homeserver never tried to reach us. */
export const UNREACHABLE_HOMESERVER = 'cannot reach the homeserver';

const HINTS: Readonly<Record<string, string>> = {
  M_UNKNOWN_TOKEN: 'the homeserver does not know our as_token: add registration.yaml to app_service_config_files and restart it',
  M_FORBIDDEN: 'the as_token does not belong to this appservice id: use the registration.yaml the homeserver loaded',
  M_URL_NOT_SET: 'the registration has no url',
  M_CONNECTION_FAILED: 'the homeserver cannot connect to the url in registration.yaml',
  M_CONNECTION_TIMEOUT: 'the homeserver timed out calling the url in registration.yaml',
  M_BAD_STATUS: 'we refused the homeserver: its hs_token differs from ours, or the url points elsewhere',
};

/**
 * Asks the homeserver to call our /ping (POST /_matrix/client/v1/appservice/{id}/ping): proof that it
 * loaded our registration, can reach our url, and holds the same hs_token.
 */
export async function pingThroughHomeserver(options: {
  readonly homeserverUrl: string;
  readonly appserviceId: string;
  readonly asToken: string;
  readonly timeoutMs: number;
}): Promise<PingResult> {
  try {
    const answer = await callHomeserver({
      method: 'POST',
      url: `${options.homeserverUrl}/_matrix/client/v1/appservice/${encodeURIComponent(options.appserviceId)}/ping`,
      accessToken: options.asToken,
      timeoutMs: options.timeoutMs,
      acceptServerErrors: true,
      body: { transaction_id: `regservice-ping-${Date.now()}` },
    });
    if (answer.status === 200) {
      return { ok: true, durationMs: typeof answer.body.duration_ms === 'number' ? answer.body.duration_ms : -1 };
    }
    const errcode = errcodeOf(answer) || `HTTP ${answer.status}`;
    const hint = HINTS[errcode] ?? '';
    return { ok: false, reason: `${errcode} ${errorTextOf(answer)}${hint ? ` (${hint})` : ''}`.trim() };
  } catch (error) {
    return { ok: false, reason: `${UNREACHABLE_HOMESERVER} at ${options.homeserverUrl}: ${(error as Error).message}` };
  }
}
