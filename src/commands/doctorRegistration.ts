import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { localServiceUrl } from '../config/connectAddress.js';
import { parseRegistration, type RegistrationSecrets } from '../config/registrationFile.js';
import type { Settings } from '../config/settings.js';
import { DEBIAN_HOMESERVER_YAML, DEBIAN_SYNAPSE_WORKDIR } from '../genconfig/debianLayout.js';
import { configValue, readSynapseConfig } from '../genconfig/homeserverConfig.js';
import type { CheckResult } from './doctor.js';

/**
 * The running service holds the registration's hs_token: an application-service route, authenticated with it, answers
 * (a user query: 404 or 200), where another token gets 403. Synapse's copy cannot be read back from Synapse, so this and
 * the ping are what can be observed.
 */
export async function checkServiceHsToken(settings: Settings, timeoutMs: number): Promise<CheckResult> {
  const what = "the running service holds the registration's hs_token";
  const url = `${localServiceUrl(settings)}/_matrix/app/v1/users/${encodeURIComponent(`@0x${'0'.repeat(40)}:${settings.serverName}`)}`;
  try {
    const response = await fetch(url, { headers: { authorization: `Bearer ${settings.hsToken}` }, signal: AbortSignal.timeout(timeoutMs) });
    await response.arrayBuffer();
    if (response.status === 200 || response.status === 404)
      return { ok: true, what, detail: `an authenticated user query answered ${response.status}` };
    return {
      ok: false,
      what,
      detail: `HTTP ${response.status}: the service runs on other tokens than this registration's; restart it on this file`,
    };
  } catch (error) {
    return {
      ok: true,
      skipped: true,
      what,
      detail: `not checked: no service answers at ${localServiceUrl(settings)} (${(error as Error).message})`,
    };
  }
}

/** Synapse's configuration: --homeserver-config, homeserver.yaml here, or Debian's. */
function homeserverConfigPath(given: string | undefined): string | undefined {
  if (given !== undefined) return resolve(given);
  return [resolve('homeserver.yaml'), DEBIAN_HOMESERVER_YAML].find((path) => existsSync(path));
}

/** The url of the service's own registration file, which it reads at its start (undefined when it cannot be read). */
function urlOf(file: string): string | undefined {
  try {
    return parseRegistration(readFileSync(file, 'utf8')).url;
  } catch {
    return undefined;
  }
}

/**
 * The registration Synapse's configuration lists for this service's id is the given file, or one with the same tokens,
 * url and user namespace: else Synapse runs on another (the Go original's `@.*`, an older copy). A file doctor cannot
 * read (run as the service's account, Synapse's copy is Synapse's) is said, not failed.
 */
export function checkSynapseListing(settings: Settings, homeserverConfig: string | undefined): CheckResult[] {
  const what = "the registration Synapse's configuration lists for this service";
  const ours = settings.registrationFile;
  if (ours === undefined || settings.appserviceId === undefined) return [];
  const path = homeserverConfigPath(homeserverConfig);
  if (path === undefined) {
    return [{ ok: true, skipped: true, what, detail: 'not checked: no homeserver.yaml found (give --homeserver-config FILE)' }];
  }
  let listed: unknown;
  try {
    const config = readSynapseConfig(path);
    listed = configValue(config, 'app_service_config_files');
  } catch (error) {
    return [
      {
        ok: true,
        skipped: true,
        what,
        detail: `not checked: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
      },
    ];
  }
  const entries = Array.isArray(listed) ? listed.filter((entry): entry is string => typeof entry === 'string') : [];
  const bases = [dirname(path), ...(path === DEBIAN_HOMESERVER_YAML ? [DEBIAN_SYNAPSE_WORKDIR] : [])];
  const unreadable: string[] = [];
  for (const entry of entries) {
    const file = isAbsolute(entry) ? entry : bases.map((base) => resolve(base, entry)).find((candidate) => existsSync(candidate));
    if (file === undefined) continue;
    let registration: RegistrationSecrets;
    try {
      registration = parseRegistration(readFileSync(file, 'utf8'));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EACCES') unreadable.push(file);
      continue;
    }
    if (registration.id !== settings.appserviceId) continue;
    if (resolve(file) === resolve(ours)) return [{ ok: true, what, detail: `${file}, the given one` }];
    const same =
      registration.url === urlOf(ours) &&
      registration.as_token === settings.asToken &&
      registration.hs_token === settings.hsToken &&
      isDeepStrictEqual(registration.userRegexes, settings.appserviceUserRegexes);
    return same
      ? [{ ok: true, what, detail: `${file}: a copy of ${ours} (same url, tokens and user namespace)` }]
      : [
          {
            ok: false,
            what,
            detail:
              `${file} has this service's id ${settings.appserviceId} but another url, other tokens or another user namespace ` +
              `(${registration.userRegexes.join(', ') || 'none'}) than ${ours}: point Synapse at this service's registration ` +
              '(genconfig --patch-homeserver does) and restart it',
          },
        ];
  }
  if (unreadable.length > 0) {
    return [
      {
        ok: true,
        skipped: true,
        what,
        detail: `not checked: cannot read ${unreadable.join(', ')} as this user (Synapse's own copies); run doctor as root to compare them`,
      },
    ];
  }
  return [
    {
      ok: false,
      what,
      detail: `${path} lists no registration with the id ${settings.appserviceId}: add ${ours} to app_service_config_files`,
    },
  ];
}
