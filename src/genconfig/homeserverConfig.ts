import { resolve } from 'node:path';
import { isMap, isSeq, parseDocument, type Document } from 'yaml';
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
      ? (listener.resources as { names?: unknown }[]).flatMap((resource) => (Array.isArray(resource.names) ? resource.names : []))
      : [];
    if (listener.type !== 'http' || !names.includes('client') || typeof listener.port !== 'number') continue;
    const bound = Array.isArray(listener.bind_addresses) ? String(listener.bind_addresses[0] ?? '') : '';
    return `${listener.tls === true ? 'https' : 'http'}://${connectHost(bound)}:${listener.port}`;
  }
  return undefined;
}

/** Reads server_name, the shared secret source and the client listener; paths relative to `configDir`. */
export function readHomeserverFacts(text: string, configDir: string): HomeserverFacts {
  const doc = parseDocument(text).toJS() as Record<string, unknown> | null;
  if (doc === null || typeof doc !== 'object') throw new Error('is not a YAML mapping');
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

export interface HomeserverChange {
  readonly key: string;
  readonly describe: string;
  apply(doc: Document): void;
}

/** The homeserver.yaml changes the deployment needs and the document does not have yet. */
export function neededHomeserverChanges(text: string, wanted: { registrationFile: string; sharedSecretFile?: string | undefined }): HomeserverChange[] {
  const doc = parseDocument(text);
  const changes: HomeserverChange[] = [];
  if (doc.get('enable_registration') !== false) {
    changes.push({ key: 'enable_registration', describe: 'enable_registration: false', apply: (d) => d.set('enable_registration', false) });
  }
  const files = doc.get('app_service_config_files');
  const listed = isSeq(files) ? files.items.map((item) => String((item as { value?: unknown }).value ?? item)) : [];
  if (!listed.includes(wanted.registrationFile)) {
    changes.push({
      key: 'app_service_config_files',
      describe: `app_service_config_files:\n  - ${wanted.registrationFile}`,
      apply: (d) => {
        const current = d.get('app_service_config_files');
        if (isSeq(current)) current.add(d.createNode(wanted.registrationFile));
        else d.set('app_service_config_files', d.createNode([wanted.registrationFile]));
      },
    });
  }
  const hasSecret = doc.has('registration_shared_secret') || doc.has('registration_shared_secret_path');
  if (wanted.sharedSecretFile !== undefined && !hasSecret) {
    const file = wanted.sharedSecretFile;
    changes.push({
      key: 'registration_shared_secret_path',
      describe: `registration_shared_secret_path: ${file}`,
      apply: (d) => d.set('registration_shared_secret_path', file),
    });
  }
  return changes;
}

/** Applies the changes, keeping the document's comments and layout elsewhere. */
export function applyHomeserverChanges(text: string, changes: readonly HomeserverChange[]): string {
  const doc = parseDocument(text);
  if (!isMap(doc.contents)) throw new Error('homeserver.yaml is not a YAML mapping');
  for (const change of changes) change.apply(doc);
  return doc.toString({ lineWidth: 0 });
}
