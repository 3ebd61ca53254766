import { accessSync, constants, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Settings } from '../config/settings.js';
import { localServiceUrl } from '../config/connectAddress.js';
import { pingThroughHomeserver } from '../homeserver/appservicePing.js';
import { callHomeserver, errcodeOf, errorTextOf, type HomeserverAnswer } from '../homeserver/homeserverCall.js';
import { homeserverVersions } from '../homeserver/homeserverVersions.js';
import { describeDatabaseUrl } from '../config/databaseUrl.js';
import { openLevelStore, STORE_DIRECTORY } from '../store/leveldb/levelStore.js';
import { openStoreForReading } from '../store/openStore.js';
import { StoreOpenError } from '../store/store.js';
import { namespaceIsWide, WIDE_NAMESPACE_WARNING } from '../config/registrationFile.js';
import { sharedSecretMac } from '../protocol/sharedSecretMac.js';
import { CLIENT_ADDRESS_HEADER } from '../http/clientKey.js';
import { checkServiceHsToken, checkSynapseListing } from './doctorRegistration.js';

export interface CheckResult {
  readonly ok: boolean;
  readonly what: string;
  readonly detail: string;
  /** Works, but the operator should change something: printed WARN, and doctor still passes. */
  readonly warning?: true;
  /** Not checked, because a check it depends on failed (that one says why): printed skip. */
  readonly skipped?: true;
}

type Check = () => Promise<CheckResult[]>;

const TIMEOUT_MS = 5000;

function failure(error: unknown): string {
  return (error as Error).message;
}

async function checkHomeserver(settings: Settings): Promise<CheckResult> {
  const what = `homeserver ${settings.homeserverUrl} reachable`;
  try {
    const versions = await homeserverVersions(settings.homeserverUrl, TIMEOUT_MS);
    return { ok: true, what, detail: `client-server API versions ${versions[0] ?? '?'} … ${versions.at(-1) ?? '?'}` };
  } catch (error) {
    return { ok: false, what, detail: failure(error) };
  }
}

/**
 * Proves the shared secret without creating a user: Synapse checks the MAC before the user name, so a correctly signed
 * registration of a name it cannot take (with a space) is refused for the name (400 M_INVALID_USERNAME), and one
 * signed with another secret for the MAC (403 "HMAC incorrect"). No user is created either way.
 */
async function checkSharedSecret(settings: Settings): Promise<CheckResult> {
  const what = "the shared secret is Synapse's registration_shared_secret";
  const endpoint = `${settings.homeserverUrl}/_synapse/admin/v1/register`;
  const nonceAnswer = await callHomeserver({ method: 'GET', url: endpoint, timeoutMs: TIMEOUT_MS });
  const nonce = nonceAnswer.body.nonce;
  if (typeof nonce !== 'string') {
    return {
      ok: false,
      what,
      detail: `GET ${endpoint}: HTTP ${nonceAnswer.status} ${errorTextOf(nonceAnswer)}: set registration_shared_secret in homeserver.yaml`,
    };
  }
  const probe = { nonce, username: 'matrix-regservice doctor', password: 'not a password', admin: false };
  const answer = await callHomeserver({
    method: 'POST',
    url: endpoint,
    body: { ...probe, mac: sharedSecretMac(settings.sharedSecret, probe) },
    timeoutMs: TIMEOUT_MS,
  });
  if (answer.status === 400 && errcodeOf(answer) === 'M_INVALID_USERNAME') {
    return { ok: true, what, detail: 'Synapse accepted its MAC (a probe with an impossible user name, so no user was created)' };
  }
  if (answer.status === 403) {
    return {
      ok: false,
      what,
      detail: `Synapse refused its MAC (${errorTextOf(answer)}): every registration would get 502; --sharesecret-file must hold Synapse's registration_shared_secret`,
    };
  }
  return { ok: false, what, detail: `unexpected answer to the probe: HTTP ${answer.status} ${errcodeOf(answer)} ${errorTextOf(answer)}` };
}

/** Whom the homeserver takes `token` for. */
function whoamiWith(settings: Settings, token: string): Promise<HomeserverAnswer> {
  return callHomeserver({
    method: 'GET',
    url: `${settings.homeserverUrl}/_matrix/client/v3/account/whoami`,
    accessToken: token,
    timeoutMs: TIMEOUT_MS,
  });
}

/** The admin token belongs to a server admin: whoami, then an admin-only call about that very user. */
async function checkAdminToken(settings: Settings): Promise<CheckResult> {
  const what = "the admin token is a server admin's";
  const whoami = await whoamiWith(settings, settings.adminToken);
  if (whoami.status !== 200)
    return { ok: false, what, detail: `whoami: HTTP ${whoami.status} ${errcodeOf(whoami)}: the token is not accepted` };
  const userId = String(whoami.body.user_id);
  const admin = await callHomeserver({
    method: 'GET',
    url: `${settings.homeserverUrl}/_synapse/admin/v2/users/${encodeURIComponent(userId)}`,
    accessToken: settings.adminToken,
    timeoutMs: TIMEOUT_MS,
  });
  return admin.status === 200
    ? { ok: true, what, detail: `acts as ${userId}, a server admin` }
    : { ok: false, what, detail: `${userId} is not a server admin (admin API: HTTP ${admin.status} ${errcodeOf(admin)})` };
}

/** The as_token (every backend asks whoami with it) is this application service's. */
async function checkAsToken(settings: Settings): Promise<CheckResult> {
  const what = 'the as_token is accepted';
  const answer = await whoamiWith(settings, settings.asToken);
  return answer.status === 200
    ? { ok: true, what, detail: `acts as ${String(answer.body.user_id)}` }
    : {
        ok: false,
        what,
        detail: `HTTP ${answer.status} ${errcodeOf(answer)}: Synapse has not loaded this registration, or its as_token differs`,
      };
}

async function checkBackendAccess(settings: Settings): Promise<CheckResult[]> {
  const checks: (readonly [string, (settings: Settings) => Promise<CheckResult>])[] = [
    ...(settings.backend === 'shared-secret'
      ? [["the shared secret is Synapse's registration_shared_secret", checkSharedSecret] as const]
      : []),
    ...(settings.backend === 'admin-api' ? [["the admin token is a server admin's", checkAdminToken] as const] : []),
    ['the as_token is accepted', checkAsToken],
  ];
  const results: CheckResult[] = [];
  for (const [what, check] of checks) {
    try {
      results.push(await check(settings));
    } catch (error) {
      results.push({ ok: false, what, detail: failure(error) });
    }
  }
  return results;
}

function checkNamespace(settings: Settings): CheckResult {
  const what = "the registration's user namespace";
  if (settings.appserviceUserRegexes.length === 0) return { ok: true, what, detail: 'no registration named' };
  return namespaceIsWide(settings.appserviceUserRegexes, settings.serverName)
    ? { ok: true, warning: true, what, detail: WIDE_NAMESPACE_WARNING }
    : { ok: true, what, detail: `Photon nodes only: ${settings.appserviceUserRegexes.join(', ')}` };
}

async function checkPing(settings: Settings): Promise<CheckResult> {
  const what = 'homeserver loaded our registration and reaches us (application-service ping)';
  if (settings.appserviceId === undefined) return { ok: false, what, detail: 'no appservice id: give --registration registration.yaml' };
  const result = await pingThroughHomeserver({
    homeserverUrl: settings.homeserverUrl,
    appserviceId: settings.appserviceId,
    asToken: settings.asToken,
    timeoutMs: TIMEOUT_MS,
  });
  return result.ok ? { ok: true, what, detail: `round trip ${result.durationMs} ms` } : { ok: false, what, detail: result.reason };
}

async function serviceAnswers(url: string): Promise<boolean> {
  try {
    const response = await fetch(`${url}/register`, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    const body = (await response.json()) as { errcode?: unknown };
    return response.status === 405 && body.errcode === 'M_UNRECOGNIZED';
  } catch {
    return false;
  }
}

async function checkDatapath(settings: Settings): Promise<CheckResult> {
  const what = `datapath ${settings.datapath} writable and not locked by a stranger`;
  try {
    if (existsSync(settings.datapath)) accessSync(settings.datapath, constants.W_OK);
  } catch {
    return { ok: false, what, detail: 'not writable by this user' };
  }
  if (!existsSync(join(settings.datapath, STORE_DIRECTORY))) {
    return { ok: true, what, detail: 'no database yet: the service creates it when it first starts' };
  }
  try {
    const store = await openLevelStore(settings.datapath, { create: false });
    await store.close();
    return { ok: true, what, detail: 'not in use' };
  } catch (error) {
    if (error instanceof StoreOpenError && error.reason === 'locked') {
      return (await serviceAnswers(localServiceUrl(settings)))
        ? { ok: true, what, detail: `in use by the service answering at ${localServiceUrl(settings)}` }
        : { ok: false, what, detail: `locked, but no service answers at ${localServiceUrl(settings)}` };
    }
    return { ok: false, what, detail: failure(error) };
  }
}

/** The shared database answers and has this version's schema (doctor never migrates it). */
async function checkDatabase(settings: Settings, url: string): Promise<CheckResult> {
  const what = `database ${describeDatabaseUrl(url)} reachable, schema current`;
  try {
    const reading = await openStoreForReading(settings);
    try {
      let nodes = 0;
      for await (const _record of reading.store.nodes.list()) nodes += 1;
      const pending = (await reading.store.nodes.listPending()).length;
      return { ok: true, what, detail: `${nodes} registered nodes, ${pending} registrations pending` };
    } finally {
      await reading.close();
    }
  } catch (error) {
    return { ok: false, what, detail: failure(error) };
  }
}

/** `basePath` is the registration url's path: where the homeserver, and nodes behind the proxy, reach the service. */
async function checkPublicUrl(publicUrl: string, basePath: string): Promise<CheckResult[]> {
  const base = publicUrl.replace(/\/+$/, '');
  const what = `${base}${basePath} routes to matrix-regservice`;
  const regapp: CheckResult = (await serviceAnswers(`${base}${basePath}`))
    ? { ok: true, what, detail: `GET ${basePath}/register answers 405 M_UNRECOGNIZED` }
    : { ok: false, what, detail: 'no answer from matrix-regservice there: check the proxy and that the service runs' };
  let matrix: CheckResult;
  try {
    const versions = await homeserverVersions(base, TIMEOUT_MS);
    matrix = {
      ok: true,
      what: `${base}/_matrix routes to the homeserver`,
      detail: `versions ${versions[0] ?? '?'} … ${versions.at(-1) ?? '?'}`,
    };
  } catch (error) {
    matrix = { ok: false, what: `${base}/_matrix routes to the homeserver`, detail: failure(error) };
  }
  return [regapp, await checkForwardedFor(base, basePath), matrix];
}

/** An address no client has (TEST-NET-1): if the service takes a request carrying it for that client, the proxy passed it. */
const MADE_UP_CLIENT = '192.0.2.83';

/**
 * Whether the proxy sets the client's address itself: a request through the public URL carrying a made-up
 * X-Forwarded-For, and the service's answer names the client it took it for. The made-up one means the proxy passes what
 * a client sends, so anyone can claim any address and dodge every limit.
 */
async function checkForwardedFor(base: string, basePath: string): Promise<CheckResult> {
  const what = 'the proxy sets the client address (X-Forwarded-For) itself';
  try {
    const response = await fetch(`${base}${basePath}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': MADE_UP_CLIENT },
      body: '{}',
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    await response.body?.cancel();
    const seen = response.headers.get(CLIENT_ADDRESS_HEADER);
    if (seen === null) return { ok: false, what, detail: 'no answer from matrix-regservice there naming the client' };
    if (seen === MADE_UP_CLIENT) {
      return {
        ok: false,
        what,
        detail:
          `the service took a request for ${MADE_UP_CLIENT}, the X-Forwarded-For doctor made up: the proxy passes on what clients ` +
          'send, so anyone can claim any address and dodge every limit; in nginx add "proxy_set_header X-Forwarded-For $remote_addr;"',
      };
    }
    return { ok: true, what, detail: `the service saw this machine as ${seen}, not the made-up ${MADE_UP_CLIENT}` };
  } catch (error) {
    return { ok: false, what, detail: failure(error) };
  }
}

/** Every check, in order; the caller prints them and exits non-zero on any failure. */
export async function runDoctor(
  settings: Settings,
  publicUrl: string | undefined,
  homeserverConfig: string | undefined = undefined,
): Promise<CheckResult[]> {
  const homeserver = await checkHomeserver(settings);
  // Each check that asks the homeserver would fail for the same reason: said once.
  const askHomeserver = (): Promise<CheckResult[]> =>
    homeserver.ok
      ? (async () => [...(await checkBackendAccess(settings)), await checkPing(settings)])()
      : Promise.resolve([
          {
            ok: true,
            skipped: true,
            what: "the backend's secret, the as_token and the application-service ping",
            detail: 'not checked: the homeserver is unreachable',
          },
        ]);
  const checks: Check[] = [
    async () => [homeserver],
    askHomeserver,
    () => Promise.resolve([checkNamespace(settings), ...checkSynapseListing(settings, homeserverConfig)]),
    async () => [await checkServiceHsToken(settings, TIMEOUT_MS)],
    async () => [settings.database === undefined ? await checkDatapath(settings) : await checkDatabase(settings, settings.database)],
  ];
  const results: CheckResult[] = [];
  for (const check of checks) results.push(...(await check()));
  if (publicUrl !== undefined) results.push(...(await checkPublicUrl(publicUrl, settings.basePath)));
  return results;
}

export function formatCheck(result: CheckResult): string {
  const mark = !result.ok ? 'FAIL' : result.skipped === true ? 'skip' : result.warning === true ? 'WARN' : 'ok  ';
  return `${mark}  ${result.what}: ${result.detail}`;
}
