import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SettingsLayer } from '../config/settings.js';
import { parseYamlQuietly } from '../config/yamlText.js';

/** Where the Go original's genconfig writes its registration, in the directory it ran in (Synapse's config directory). */
export const GO_REGISTRATION_FILE = 'registration.yaml';

interface GoRegistrationDoc {
  readonly id?: unknown;
  readonly url?: unknown;
  readonly as_token?: unknown;
  readonly hs_token?: unknown;
  readonly sender_localpart?: unknown;
  readonly protocols?: unknown;
  readonly namespaces?: { readonly users?: unknown };
}

/**
 * Whether a registration is the one the Go original's genconfig wrote for `serverName` (main.go, genyaml): url path
 * /regapp/1, sender_localpart the domain, protocol regapp.<domain>, user namespace `@.*`. A config directory often holds
 * bridges' registrations too: nothing else is taken for it.
 */
export function isGoRegistration(doc: unknown, serverName: string): boolean {
  if (typeof doc !== 'object' || doc === null) return false;
  const fields = doc as GoRegistrationDoc;
  let path: string;
  try {
    path = new URL(String(fields.url)).pathname.replace(/\/+$/, '');
  } catch {
    return false;
  }
  const users = Array.isArray(fields.namespaces?.users) ? (fields.namespaces.users as { regex?: unknown }[]) : [];
  return (
    path === '/regapp/1' &&
    fields.sender_localpart === serverName &&
    Array.isArray(fields.protocols) &&
    fields.protocols.length === 1 &&
    fields.protocols[0] === `regapp.${serverName}` &&
    users.some((entry) => entry.regex === '@.*') &&
    typeof fields.as_token === 'string' &&
    typeof fields.hs_token === 'string' &&
    typeof fields.id === 'string'
  );
}

export interface GoRegistration {
  readonly path: string;
  readonly url: string;
  readonly id: string;
  readonly asToken: string;
  readonly hsToken: string;
}

/** The Go original's registration in `dir`, when there is one of its shape for `serverName`. */
export function findGoRegistration(dir: string, serverName: string): GoRegistration | undefined {
  const path = join(dir, GO_REGISTRATION_FILE);
  if (serverName === '' || !existsSync(path)) return undefined;
  let doc: unknown;
  try {
    doc = parseYamlQuietly(readFileSync(path, 'utf8'));
  } catch {
    return undefined;
  }
  if (!isGoRegistration(doc, serverName)) return undefined;
  const fields = doc as { id: string; url: string; as_token: string; hs_token: string };
  return { path, url: String(fields.url), id: fields.id, asToken: fields.as_token, hsToken: fields.hs_token };
}

/** The lowest settings layer: the Go original's registration, for a run.sh of the Go original's that names none. */
export function goRegistrationLayer(found: GoRegistration): SettingsLayer {
  return { source: `the Go original's registration ${found.path}`, values: { registration: found.path } };
}

/**
 * Tokens a higher layer (flags, environment, config file) gives that differ from the Go original's registration:
 * Synapse holds that file's, so a run with others would never hear from it.
 */
export function contradictedTokens(found: GoRegistration, given: { readonly astoken: string; readonly hstoken: string }): string[] {
  const problems: string[] = [];
  if (given.astoken !== found.asToken) problems.push('as_token');
  if (given.hstoken !== found.hsToken) problems.push('hs_token');
  return problems;
}

/** The one line the Go original's generated run.sh (tokens, no shared secret) stops with. */
export const GO_GENERATED_FORM =
  "this is the Go original's generated run.sh (--astoken and --hstoken, no shared secret), and this service creates " +
  "accounts with Synapse's registration_shared_secret: add --sharesecret-file /etc/matrix-synapse/registration_shared_secret " +
  '(a file holding the secret; README: Moving from the Go original)';
