import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { isMap, type Document } from 'yaml';
import { parseLikePyYaml, pyYamlValue } from './homeserverPatch.js';
import type { RawSettings } from '../config/settings.js';
import { connectHost } from '../config/connectAddress.js';

/** One of the files Synapse reads its configuration from. */
export interface SynapseConfigFile {
  readonly path: string;
  readonly text: string;
  readonly doc: Document.Parsed;
}

/**
 * Synapse's configuration as it reads it: homeserver.yaml, then (Debian's layout, whose unit passes both to
 * --config-path) every conf.d/*.yaml next to it, in sorted name order, each top-level key replacing the one before.
 */
export interface SynapseConfig {
  readonly homeserverYaml: SynapseConfigFile;
  /** conf.d next to homeserver.yaml, when there is one. */
  readonly confDir: string | undefined;
  /** conf.d's *.yaml files, in the order Synapse reads them. */
  readonly confFiles: readonly SynapseConfigFile[];
}

function readConfigFile(path: string): SynapseConfigFile {
  const text = readFileSync(path, 'utf8');
  const doc = parseLikePyYaml(text);
  const error = doc.errors[0];
  if (error !== undefined) {
    const at = error.linePos?.[0];
    throw new Error(
      `${path} is not valid YAML at line ${at?.line ?? '?'}, column ${at?.col ?? '?'} (${error.code.toLowerCase().replaceAll('_', ' ')})`,
    );
  }
  return { path, text, doc };
}

/** Synapse's conf.d order: the *.yaml files of the directory, sorted by name (Python's sorted(): by code point). */
export function confDirFiles(confDir: string): string[] {
  return readdirSync(confDir)
    .filter((name) => name.endsWith('.yaml') && statSync(join(confDir, name)).isFile())
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((name) => join(confDir, name));
}

export function readSynapseConfig(homeserverYamlPath: string): SynapseConfig {
  const path = resolve(homeserverYamlPath);
  const confDir = join(dirname(path), 'conf.d');
  const hasConfDir = existsSync(confDir) && statSync(confDir).isDirectory();
  return {
    homeserverYaml: readConfigFile(path),
    confDir: hasConfDir ? confDir : undefined,
    confFiles: hasConfDir ? confDirFiles(confDir).map(readConfigFile) : [],
  };
}

/** The value Synapse ends up with for a top-level key: the last file that sets it wins (PyYAML: its last duplicate). */
export function configValue(config: SynapseConfig, key: string): unknown {
  let value: unknown;
  for (const file of [config.homeserverYaml, ...config.confFiles]) {
    if (!isMap(file.doc.contents)) continue;
    const found = pyYamlValue(file.doc, key);
    if (found !== undefined) value = found;
  }
  return value;
}

/** What genconfig takes from Synapse's configuration. */
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

interface ClientListener {
  readonly url: string;
  readonly tls: boolean;
  /** 0: IPv4 loopback (or every address, reached on loopback), 1: IPv6 loopback, 2: another address. */
  readonly rank: number;
  readonly port: number;
}

function servesClient(listener: Listener): boolean {
  const names = Array.isArray(listener.resources)
    ? (listener.resources as { names?: unknown }[]).flatMap((resource) =>
        Array.isArray(resource.names) ? (resource.names as unknown[]) : [],
      )
    : [];
  return listener.type === 'http' && names.includes('client') && typeof listener.port === 'number';
}

function addressRank(address: string): number {
  if (['', '0.0.0.0', '::', '127.0.0.1'].includes(address)) return 0;
  if (address === '::1') return 1;
  return 2;
}

/**
 * The listener the service reaches Synapse's client API on: plain HTTP before TLS (the service runs beside Synapse, and
 * a TLS listener is usually the federation one), loopback before any other address.
 */
function clientListener(listeners: unknown): { chosen: ClientListener; skipped: readonly ClientListener[] } | undefined {
  if (!Array.isArray(listeners)) return undefined;
  const candidates = (listeners as Listener[]).filter(servesClient).map((listener): ClientListener => {
    const addresses =
      Array.isArray(listener.bind_addresses) && listener.bind_addresses.length > 0 ? listener.bind_addresses.map(String) : [''];
    const best = [...addresses].sort((a, b) => addressRank(a) - addressRank(b))[0] ?? '';
    const tls = listener.tls === true;
    return {
      url: `${tls ? 'https' : 'http'}://${connectHost(best)}:${String(listener.port)}`,
      tls,
      rank: addressRank(best),
      port: listener.port as number,
    };
  });
  const [chosen, ...skipped] = [...candidates].sort((a, b) => Number(a.tls) - Number(b.tls) || a.rank - b.rank);
  return chosen === undefined ? undefined : { chosen, skipped };
}

function describeListener({ chosen, skipped }: { chosen: ClientListener; skipped: readonly ClientListener[] }): string {
  const kind = `${chosen.tls ? 'TLS' : 'plain HTTP'}${chosen.rank < 2 ? ' on loopback' : ''}`;
  const others = skipped.map((listener) => `${listener.tls ? 'TLS' : 'plain'} on port ${listener.port}`);
  return `client listener ${chosen.url} (${kind}${others.length === 0 ? '' : `; chosen over ${others.join(', ')}`})`;
}

/** Reads server_name, the shared secret source and the client listener; paths relative to `configDir`. */
export function readHomeserverFacts(value: (key: string) => unknown, configDir: string): HomeserverFacts {
  const settings: RawSettings = {};
  const found: string[] = [];
  const serverName = value('server_name');
  if (typeof serverName === 'string') {
    settings.matrixdomain = serverName;
    found.push(`server_name ${serverName}`);
  }
  const secretPath = value('registration_shared_secret_path');
  const secret = value('registration_shared_secret');
  if (typeof secretPath === 'string') {
    settings['sharesecret-file'] = resolve(configDir, secretPath);
    found.push(`registration_shared_secret_path ${settings['sharesecret-file']}`);
  } else if (typeof secret === 'string') {
    settings.sharesecret = secret;
    found.push('registration_shared_secret (copied to a 0600 file, never onto a command line)');
  }
  const listener = clientListener(value('listeners'));
  if (listener !== undefined) {
    settings.matrixurl = listener.chosen.url;
    found.push(describeListener(listener));
  }
  return { settings, found };
}
