import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { OPTION_SPECS } from './options.js';
import type { Settings } from './settings.js';

/** The settings gates sharing one database must agree on: those the options table marks `shared`. */
export type SharedKey = Extract<(typeof OPTION_SPECS)[number], { shared: true }>['key'];

/** A list file's content, by digest (the paths may differ from gate to gate; what they hold may not). */
function listDigest(path: string | undefined): string {
  if (path === undefined) return 'none';
  try {
    return `sha256:${createHash('sha256').update(readFileSync(path)).digest('hex').slice(0, 16)}`;
  } catch {
    return 'unreadable';
  }
}

/** How each shared setting reads, for comparing gates: every shared key has one (the compiler checks). */
const VALUES: Readonly<Record<SharedKey, (settings: Settings) => string>> = {
  matrixdomain: (s) => s.serverName,
  'pending-lease': (s) => String(s.pendingLeaseMs / 1000),
  backend: (s) => s.backend,
  'allow-password-reset': (s) => String(s.allowPasswordReset),
  'homeserver-timeout': (s) => String(s.homeserverTimeoutMs / 1000),
  'rate-limit-client': (s) => String(s.rateLimitClientPerMinute),
  'rate-limit-node': (s) => String(s.rateLimitNodePerMinute),
  'rate-limit-ipv6-prefix': (s) => String(s.rateLimitIpv6Prefix),
  'accounts-per-hour-ipv4': (s) => String(s.accountCeilings.ipv4),
  'accounts-per-hour-ipv4-24': (s) => String(s.accountCeilings.ipv4Network),
  'accounts-per-hour-ipv6-64': (s) => String(s.accountCeilings.ipv6Subscriber),
  'accounts-per-hour-ipv6-56': (s) => String(s.accountCeilings.ipv6Site),
  'accounts-per-hour-ipv6-48': (s) => String(s.accountCeilings.ipv6Organization),
  'accounts-per-hour': (s) => String(s.accountCeilings.perHour),
  'accounts-per-day': (s) => String(s.accountCeilings.perDay),
  'allow-list': (s) => listDigest(s.allowList),
  'deny-list': (s) => listDigest(s.denyList),
};

/** This gate's shared settings as it announces them to the others. */
export function sharedSettingsOf(settings: Settings): Record<string, string> {
  return Object.fromEntries(Object.entries(VALUES).map(([key, read]) => [key, read(settings)]));
}

/** One shared setting a gate sharing the database holds otherwise. */
export interface SharedSettingDifference {
  readonly key: string;
  readonly here: string;
  readonly gate: string;
  readonly there: string;
}

/** Where the other gates' shared settings differ from this one's (a key one of them does not know is not compared). */
export function sharedSettingDifferences(
  here: Readonly<Record<string, string>>,
  others: readonly { readonly gate: string; readonly settings: Readonly<Record<string, string>> }[],
): SharedSettingDifference[] {
  return others.flatMap(({ gate, settings }) =>
    Object.entries(here).flatMap(([key, value]) => {
      const there = settings[key];
      return there === undefined || there === value ? [] : [{ key, here: value, gate, there }];
    }),
  );
}
