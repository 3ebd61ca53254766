import { accessSync, constants, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Settings } from '../config/settings.js';
import { localServiceUrl } from '../config/connectAddress.js';
import { pingThroughHomeserver } from '../homeserver/appservicePing.js';
import { callHomeserver, errcodeOf, errorTextOf } from '../homeserver/homeserverCall.js';
import { homeserverVersions } from '../homeserver/homeserverVersions.js';
import { describeDatabaseUrl } from '../config/databaseUrl.js';
import { openLevelStore, STORE_DIRECTORY } from '../store/leveldb/levelStore.js';
import { openStoreForReading } from '../store/openStore.js';
import { StoreOpenError } from '../store/store.js';

export interface CheckResult {
  readonly ok: boolean;
  readonly what: string;
  readonly detail: string;
}

type Check = () => Promise<CheckResult>;

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

async function checkBackendAccess(settings: Settings): Promise<CheckResult> {
  try {
    if (settings.backend === 'shared-secret') {
      const what = 'shared-secret registration endpoint present';
      const answer = await callHomeserver({
        method: 'GET',
        url: `${settings.homeserverUrl}/_synapse/admin/v1/register`,
        timeoutMs: TIMEOUT_MS,
      });
      return typeof answer.body.nonce === 'string'
        ? { ok: true, what, detail: 'GET /_synapse/admin/v1/register gives a nonce' }
        : { ok: false, what, detail: `HTTP ${answer.status} ${errorTextOf(answer)}: set registration_shared_secret in homeserver.yaml` };
    }
    const token = settings.backend === 'admin-api' ? settings.adminToken : settings.asToken;
    const what = settings.backend === 'admin-api' ? 'admin token accepted' : 'as_token accepted';
    const answer = await callHomeserver({
      method: 'GET',
      url: `${settings.homeserverUrl}/_matrix/client/v3/account/whoami`,
      accessToken: token,
      timeoutMs: TIMEOUT_MS,
    });
    return answer.status === 200
      ? { ok: true, what, detail: `acts as ${String(answer.body.user_id)}` }
      : { ok: false, what, detail: `HTTP ${answer.status} ${errcodeOf(answer)}` };
  } catch (error) {
    return { ok: false, what: `${settings.backend} backend usable`, detail: failure(error) };
  }
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
  return [regapp, matrix];
}

/** Every check, in order; the caller prints them and exits non-zero on any failure. */
export async function runDoctor(settings: Settings, publicUrl: string | undefined): Promise<CheckResult[]> {
  const checks: Check[] = [
    () => checkHomeserver(settings),
    () => checkBackendAccess(settings),
    () => checkPing(settings),
    () => (settings.database === undefined ? checkDatapath(settings) : checkDatabase(settings, settings.database)),
  ];
  const results: CheckResult[] = [];
  for (const check of checks) results.push(await check());
  if (publicUrl !== undefined) results.push(...(await checkPublicUrl(publicUrl, settings.basePath)));
  return results;
}

export function formatCheck(result: CheckResult): string {
  return `${result.ok ? 'ok  ' : 'FAIL'}  ${result.what}: ${result.detail}`;
}
