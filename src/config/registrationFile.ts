import { stringify } from 'yaml';
import { NODE_LOCALPART_PATTERN } from '../protocol/nodeId.js';
import { parseYamlQuietly } from './yamlText.js';

/** The fields of an application-service registration.yaml this service reads and writes. */
export interface AppserviceRegistration {
  readonly id: string;
  readonly url: string;
  readonly as_token: string;
  readonly hs_token: string;
  readonly sender_localpart: string;
  readonly namespaces: {
    readonly users: readonly { readonly exclusive: boolean; readonly regex: string }[];
    readonly aliases: readonly { readonly exclusive: boolean; readonly regex: string }[];
    readonly rooms: readonly { readonly exclusive: boolean; readonly regex: string }[];
  };
  readonly rate_limited: boolean;
}

export type RegistrationSecrets = Pick<AppserviceRegistration, 'id' | 'url' | 'as_token' | 'hs_token'> & {
  /** The user namespace regexes (namespaces.users[].regex). */
  readonly userRegexes: readonly string[];
  /** Those of them that are exclusive. */
  readonly exclusiveUserRegexes: readonly string[];
};

/** Reads id, url, as_token and hs_token (and the user namespaces); throws with the name of what is missing. */
export function parseRegistration(text: string): RegistrationSecrets {
  const doc = parseYamlQuietly(text);
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new Error('is not a YAML mapping');
  }
  const fields = doc as Record<string, unknown>;
  const read = (key: keyof RegistrationSecrets): string => {
    const value = fields[key];
    if (typeof value !== 'string' || value.trim() === '') throw new Error(`has no ${key}`);
    return value.trim();
  };
  const namespaces = fields.namespaces as { users?: unknown } | undefined;
  const users = Array.isArray(namespaces?.users) ? (namespaces.users as { regex?: unknown; exclusive?: unknown }[]) : [];
  const userRegexes = users.map((entry) => entry.regex).filter((regex): regex is string => typeof regex === 'string');
  const exclusiveUserRegexes = users
    .filter((entry) => entry.exclusive === true)
    .map((entry) => entry.regex)
    .filter((regex): regex is string => typeof regex === 'string');
  return { id: read('id'), url: read('url'), as_token: read('as_token'), hs_token: read('hs_token'), userRegexes, exclusiveUserRegexes };
}

/**
 * Whether a user namespace takes in users other than Photon nodes (the Go original's `@.*` does): Synapse then asks the
 * service about every unknown user in it and sends it their events. Synapse applies each regex with Python's re.match,
 * anchored at the start; a regex JavaScript cannot read counts as wide.
 */
export function namespaceIsWide(regexes: readonly string[], serverName: string): boolean {
  return regexes.some((regex) => {
    try {
      return new RegExp(`^(?:${regex})`).test(`@alice:${serverName}`);
    } catch {
      return true;
    }
  });
}

/** Whether one of the regexes takes in Photon nodes of `serverName` (as Synapse applies them: re.match, anchored at the start). */
export function coversPhotonNodes(regexes: readonly string[], serverName: string): boolean {
  const node = `@0x${'0123456789abcdef'.repeat(3).slice(0, 40)}:${serverName}`;
  return regexes.some((regex) => {
    try {
      return new RegExp(`^(?:${regex})`).test(node);
    } catch {
      return false;
    }
  });
}

/** What the service says of a wide namespace, at start and in doctor. */
export const WIDE_NAMESPACE_WARNING =
  "the registration's user namespace takes in every user (the Go original's '@.*'): Synapse asks this service about " +
  `every unknown user and sends it every event on the server; narrow it to ^@0x[0-9a-f]{40}:<domain>$ (README: Moving from the Go original)`;

/** A regex source matching `text` literally (Python `re` and JavaScript agree on these escapes). */
export function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The one user namespace this service needs: Photon ids on this server, nothing else.
 * Anchored at both ends because Synapse applies it with Python's `re.match` (start only).
 */
export function photonUserRegex(serverName: string): string {
  return `^@${NODE_LOCALPART_PATTERN}:${escapeRegex(serverName)}$`;
}

export function renderRegistration(registration: AppserviceRegistration): string {
  return stringify(registration, { lineWidth: 0 });
}
