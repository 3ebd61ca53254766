import { resolve } from 'node:path';
import { isMap } from 'yaml';
import { parseLikePyYaml, pyYamlValue } from './homeserverPatch.js';
import type { RawSettings } from '../config/settings.js';
import { connectHost } from '../config/connectAddress.js';

/** What genconfig takes from Synapse's homeserver.yaml. */
export interface HomeserverFacts {
  readonly settings: RawSettings;
  /** A short account of what was found, for the operator (never a secret). */
  readonly found: readonly string[];
}

interface Listener {
  readonly port?: unknown;
  readonly type?: unknown;
  readonly tls?: unknown;
  readonly bind_addresses?: unknown;
  readonly resources?: unknown;
}

function clientListenerUrl(listeners: unknown): string | undefined {
  if (!Array.isArray(listeners)) return undefined;
  for (const listener of listeners as Listener[]) {
    const names = Array.isArray(listener.resources)
      ? (listener.resources as { names?: unknown }[]).flatMap((resource) =>
          Array.isArray(resource.names) ? (resource.names as unknown[]) : [],
        )
      : [];
    if (listener.type !== 'http' || !names.includes('client') || typeof listener.port !== 'number') continue;
    const bound = Array.isArray(listener.bind_addresses) ? String(listener.bind_addresses[0] ?? '') : '';
    return `${listener.tls === true ? 'https' : 'http'}://${connectHost(bound)}:${listener.port}`;
  }
  return undefined;
}

/** Reads server_name, the shared secret source and the client listener; paths relative to `configDir`. */
export function readHomeserverFacts(text: string, configDir: string): HomeserverFacts {
  const parsed = parseLikePyYaml(text);
  const error = parsed.errors[0];
  if (error !== undefined) {
    const at = error.linePos?.[0];
    throw new Error(
      `it is not valid YAML at line ${at?.line ?? '?'}, column ${at?.col ?? '?'} (${error.code.toLowerCase().replaceAll('_', ' ')})`,
    );
  }
  if (!isMap(parsed.contents)) throw new Error('it is not a YAML mapping');
  const doc = Object.fromEntries(
    ['server_name', 'registration_shared_secret', 'registration_shared_secret_path', 'listeners'].map((key) => [
      key,
      pyYamlValue(parsed, key),
    ]),
  );
  const settings: RawSettings = {};
  const found: string[] = [];
  if (typeof doc.server_name === 'string') {
    settings.matrixdomain = doc.server_name;
    found.push(`server_name ${doc.server_name}`);
  }
  if (typeof doc.registration_shared_secret_path === 'string') {
    settings['sharesecret-file'] = resolve(configDir, doc.registration_shared_secret_path);
    found.push(`registration_shared_secret_path ${settings['sharesecret-file']}`);
  } else if (typeof doc.registration_shared_secret === 'string') {
    settings.sharesecret = doc.registration_shared_secret;
    found.push('registration_shared_secret (copied to a 0600 file, never onto a command line)');
  }
  const url = clientListenerUrl(doc.listeners);
  if (url !== undefined) {
    settings.matrixurl = url;
    found.push(`client listener ${url}`);
  }
  return { settings, found };
}
