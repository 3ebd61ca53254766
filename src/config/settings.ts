import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import proxyaddr from 'proxy-addr';
import { normalizeHomeserverUrl } from './homeserverUrl.js';
import { defaultMaxConnections, RESERVED_DESCRIPTORS } from './openFileLimit.js';
import { databaseUrlProblem, describeDatabaseUrl, urlGivesPassword, urlHasPassword } from './databaseUrl.js';
import { OPTION_SPECS, type SettingKey } from './options.js';

/** A boolean setting's value as written (a flag's, an environment variable's, a config file's); undefined if none. */
export function parseFlag(value: string | boolean): boolean | undefined {
  if (typeof value === 'boolean') return value;
  const raw = value.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(raw)) return true;
  if (['false', '0', 'no', 'off', ''].includes(raw)) return false;
  return undefined;
}

export type Verbosity = 0 | 1 | 2 | 3 | 4 | 5;

export const BACKENDS = ['shared-secret', 'admin-api', 'appservice'] as const;
export type Backend = (typeof BACKENDS)[number];

/** New accounts allowed per window; 0 turns a ceiling off. */
export interface AccountCeilingSettings {
  /** Per IPv4 address (/32), per hour. */
  readonly ipv4: number;
  /** Per IPv4 /24, per hour. */
  readonly ipv4Network: number;
  /** Per IPv6 /64, per hour. */
  readonly ipv6Subscriber: number;
  /** Per IPv6 /56, per hour. */
  readonly ipv6Site: number;
  /** Per IPv6 /48, per hour. */
  readonly ipv6Organization: number;
  /** The whole service (every gate sharing a database), per hour and per day. */
  readonly perHour: number;
  readonly perDay: number;
}

/** The validated settings the daemon runs with. */
export interface Settings {
  readonly serverName: string;
  readonly homeserverUrl: string;
  readonly host: string;
  readonly port: number;
  readonly datapath: string;
  /** postgresql:// URL: the shared PostgreSQL store instead of LevelDB under datapath. */
  readonly database: string | undefined;
  readonly databasePassword: string | undefined;
  /** The file the database password was read from, when it came from one. */
  readonly databasePasswordFile: string | undefined;
  readonly databasePool: number;
  /** A pending registration's lease: twice the homeserver timeout unless set. */
  readonly pendingLeaseMs: number;
  readonly backend: Backend;
  /** Shared-secret backend: Synapse's registration_shared_secret. */
  readonly sharedSecret: string;
  /** The file the shared secret was read from, when it came from one. */
  readonly sharedSecretFile: string | undefined;
  /** Admin-api backend: a homeserver admin's access token. */
  readonly adminToken: string;
  readonly adminTokenFile: string | undefined;
  readonly allowPasswordReset: boolean;
  readonly asToken: string;
  readonly hsToken: string;
  readonly appserviceId: string | undefined;
  /** The registration's user namespace regexes (empty without a registration). */
  readonly appserviceUserRegexes: readonly string[];
  /** Those of them that are exclusive. */
  readonly appserviceExclusiveRegexes: readonly string[];
  /** The registration file the tokens came from, when they came from one. */
  readonly registrationFile: string | undefined;
  /** Log lines go to this file (appended) instead of standard error. */
  readonly logfile: string | undefined;
  /** Path prefix of every route, from the registration `url` (default /regapp/1). */
  readonly basePath: string;
  readonly verbosity: Verbosity;
  readonly homeserverTimeoutMs: number;
  readonly loginAfterRegister: boolean;
  /** Express "trust proxy" value: whose X-Forwarded-For names the client. */
  readonly trustedProxies: string;
  readonly rateLimitClientPerMinute: number;
  readonly rateLimitNodePerMinute: number;
  /** IPv6 clients share one rate-limit allowance per network of this prefix length. */
  readonly rateLimitIpv6Prefix: number;
  /** New accounts per hour per client network, and for the whole service per hour and day; 0: no ceiling. */
  readonly accountCeilings: AccountCeilingSettings;
  /** Worker processes that serve the listener beside the primary, which holds the state and serves it too. */
  readonly workers: number;
  readonly refusalSummaryIntervalMs: number;
  readonly maxHomeserverCalls: number;
  readonly maxQueued: number;
  readonly clientTimeoutMs: number;
  /** Connections one worker holds at once (and the primary, when given). */
  readonly maxConnections: number;
  /** Connections the primary's own listener holds at once: by default fewer, as the primary also holds the store's. */
  readonly primaryMaxConnections: number;
  readonly allowList: string | undefined;
  readonly denyList: string | undefined;
  /** 0: no metrics listener. */
  readonly metricsPort: number;
  readonly metricsHost: string;
}

export type RawValue = string | number | boolean;
/** Keys a registration.yaml contributes besides the tokens; never flags. */
export type InternalKey =
  | 'appservice-id'
  | 'appservice-url'
  /** The registration's user namespace regexes, one a line. */
  | 'appservice-user-regexes'
  /** Those of them that are exclusive, one a line. */
  | 'appservice-exclusive-regexes'
  /** The registration file the tokens came from. */
  | 'appservice-file'
  | 'sharesecret-source'
  | 'admin-token'
  | 'admin-token-source'
  | 'database-password'
  | 'database-password-source';
export type RawSettings = Partial<Record<SettingKey | InternalKey, RawValue>>;

/** One source of settings; earlier layers win. */
export interface SettingsLayer {
  readonly source: string;
  readonly values: RawSettings;
}

export const COMMAND_LINE = 'command line';
export const DEFAULT_BASE_PATH = '/regapp/1';

/** Descriptors the primary keeps beside a worker's: the store's files, the database pool, /metrics (and a channel per worker). */
export const PRIMARY_DESCRIPTORS = 64;

/**
 * The primary serves requests too, so one worker per core besides its own: on one core, none (one process). A process
 * more than there are cores would cost memory, and an IPC hop per registration, and verify no faster.
 */
export function defaultWorkers(cores = availableParallelism()): number {
  return Math.max(0, cores - 1);
}

export const DEFAULTS = {
  matrixurl: 'http://127.0.0.1:8008',
  host: '127.0.0.1',
  port: 8009,
  datapath: '.matrix',
  verbosity: 3,
  'homeserver-timeout': 30,
  'database-pool': 4,
  'login-after-register': false,
  'allow-password-reset': false,
  backend: 'shared-secret',
  'trusted-proxies': 'loopback',
  'rate-limit-client': 60,
  'rate-limit-node': 10,
  'rate-limit-ipv6-prefix': 64,
  // README, "Abuse controls", says why each.
  'accounts-per-hour-ipv4': 60,
  'accounts-per-hour-ipv4-24': 240,
  'accounts-per-hour-ipv6-64': 60,
  'accounts-per-hour-ipv6-56': 120,
  'accounts-per-hour-ipv6-48': 240,
  'accounts-per-hour': 0,
  'accounts-per-day': 0,
  workers: defaultWorkers(),
  'refusal-summary-interval': 10,
  'max-homeserver-calls': 32,
  'max-queued': 256,
  'client-timeout': 10,
  'max-connections': defaultMaxConnections(),
  'metrics-port': 0,
  'metrics-host': '127.0.0.1',
} as const satisfies RawSettings;

/** How help texts show a default that depends on the machine rather than its value here. */
export const DEFAULT_DESCRIPTIONS: Partial<Record<SettingKey, string>> = {
  workers: "the machine's available parallelism less one (the primary serves too): 0, one process, on one core",
  'pending-lease': 'twice --homeserver-timeout',
  'max-connections': `the open-file limit (ulimit -n) less ${RESERVED_DESCRIPTORS}`,
};

/** The default of a setting as help texts show it, or undefined when there is none. */
export function describeDefault(key: SettingKey): string | undefined {
  const value = (DEFAULTS as RawSettings)[key];
  if (DEFAULT_DESCRIPTIONS[key] !== undefined) return DEFAULT_DESCRIPTIONS[key];
  if (value === undefined) return undefined;
  if (value === false || (key === 'metrics-port' && value === 0) || (key.startsWith('accounts-per-') && value === 0)) return 'off';
  return String(value);
}

export class SettingsError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(problems.length === 1 ? `invalid settings: ${problems[0]}` : `invalid settings:\n  - ${problems.join('\n  - ')}`);
    this.name = 'SettingsError';
    this.problems = problems;
  }
}

export interface ResolvedSettings {
  readonly settings: Settings;
  readonly warnings: readonly string[];
}

// server_name per the Matrix spec: hostname (DNS name, IPv4 or [IPv6]) with an optional port.
const SERVER_NAME = /^(?:[A-Za-z0-9.-]{1,255}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/;
const LISTEN_HOSTNAME = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*$/;
const SECRET_KEYS: readonly SettingKey[] = OPTION_SPECS.filter((spec) => spec.kind === 'secret').map((spec) => spec.key);

function isBackend(value: string): value is Backend {
  return (BACKENDS as readonly string[]).includes(value);
}

interface Picked {
  readonly value: RawValue;
  readonly source: string;
  /** Everything the winning layer gave, to read values that travel together. */
  readonly layer: RawSettings;
}

export interface ResolveOptions {
  /** The daemon needs the shared secret and both tokens; genconfig makes them. */
  readonly requireSecrets: boolean;
  /** False for commands that only read the store (users): they need no --matrixdomain. */
  readonly requireServerName?: boolean;
}

/** The file a secret was read from, when the winning layer read it from one. */
function sourceFileOf(picked: Picked | undefined, sourceKey: InternalKey): string | undefined {
  const file = picked?.layer[sourceKey];
  return file === undefined ? undefined : String(file);
}

export function resolveSettings(layers: readonly SettingsLayer[], options: ResolveOptions = { requireSecrets: true }): ResolvedSettings {
  const problems: string[] = [];
  const warnings: string[] = [];

  const pick = (key: SettingKey | InternalKey): Picked | undefined => {
    for (const layer of layers) {
      const value = layer.values[key];
      if (value !== undefined) return { value, source: layer.source, layer: layer.values };
    }
    const fallback = (DEFAULTS as RawSettings)[key];
    return fallback === undefined ? undefined : { value: fallback, source: 'default', layer: DEFAULTS };
  };
  const describe = (key: string, picked: Picked): string => `${key} (from ${picked.source})`;

  const text = (key: SettingKey | InternalKey, required: string | undefined): string => {
    const picked = pick(key);
    if (picked === undefined) {
      if (required !== undefined) problems.push(`${key} is required: ${required}`);
      return '';
    }
    const value = String(picked.value).trim();
    if (value === '') problems.push(`${describe(key, picked)} must not be empty`);
    return value;
  };
  const integer = (key: SettingKey, min: number, max: number): number => {
    const picked = pick(key);
    if (picked === undefined) return min;
    const raw = String(picked.value).trim();
    const value = /^\d+$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      problems.push(`${describe(key, picked)} must be a whole number from ${min} to ${max}, got "${raw}"`);
      return min;
    }
    return value;
  };
  const optionalPath = (key: SettingKey): string | undefined => {
    const picked = pick(key);
    return picked === undefined ? undefined : text(key, undefined);
  };
  const flag = (key: SettingKey): boolean => {
    const picked = pick(key);
    if (picked === undefined) return false;
    if (typeof picked.value === 'boolean') return picked.value;
    const raw = String(picked.value).trim().toLowerCase();
    const parsed = parseFlag(raw);
    if (parsed !== undefined) return parsed;
    problems.push(`${describe(key, picked)} must be true or false, got "${raw}"`);
    return false;
  };

  const required = (why: string): string | undefined => (options.requireSecrets ? why : undefined);
  const backendName = text('backend', undefined);
  if (!isBackend(backendName)) problems.push(`backend must be one of ${BACKENDS.join(', ')}, got "${backendName}"`);
  const backend: Backend = isBackend(backendName) ? backendName : 'shared-secret';
  const requiredFor = (needs: Backend, why: string): string | undefined => (backend === needs ? required(why) : undefined);

  const serverName = text(
    'matrixdomain',
    options.requireServerName === false ? undefined : 'the homeserver server_name, e.g. --matrixdomain transport01.example.org',
  );
  if (serverName !== '' && !SERVER_NAME.test(serverName)) {
    problems.push(`matrixdomain must be a server name (host or host:port), got "${serverName}"`);
  }

  let homeserverUrl = '';
  const urlPicked = pick('matrixurl');
  if (urlPicked !== undefined) {
    try {
      const normalized = normalizeHomeserverUrl(String(urlPicked.value).trim());
      homeserverUrl = normalized.baseUrl;
      if (normalized.reducedFrom !== undefined) {
        warnings.push(`matrixurl "${normalized.reducedFrom}" names an endpoint; using the homeserver base URL "${homeserverUrl}" instead`);
      }
    } catch (error) {
      problems.push(`${describe('matrixurl', urlPicked)}: ${(error as Error).message}`);
    }
  }

  let basePath = DEFAULT_BASE_PATH;
  const appserviceUrl = pick('appservice-url');
  if (appserviceUrl !== undefined) {
    try {
      const path = new URL(String(appserviceUrl.value)).pathname.replace(/\/+$/, '');
      basePath = path === '' ? DEFAULT_BASE_PATH : path;
    } catch {
      problems.push(`${describe('url', appserviceUrl)} is not a URL: "${String(appserviceUrl.value)}"`);
    }
  }

  const verbosity = integer('verbosity', 0, 5) as Verbosity;
  const homeserverTimeoutMs = integer('homeserver-timeout', 1, 3600) * 1000;
  const database = pick('database') === undefined ? undefined : text('database', undefined);
  if (database !== undefined && database !== '') {
    const problem = databaseUrlProblem(database);
    if (problem !== undefined) problems.push(`database ${describeDatabaseUrl(database)} ${problem}`);
    if (urlGivesPassword(database) && pick('database-password') !== undefined) {
      problems.push('database: give the password either in the URL or in --database-password-file, not both');
    }
    if (urlHasPassword(database) && pick('database')?.source === COMMAND_LINE) {
      warnings.push(
        '--database has a password or another secret in it (user:password@, ?password= or ?sslpassword=), on the command line where other local users can read it; use --database-password-file',
      );
    }
  }
  const workers = integer('workers', 0, 1024);
  const maxHomeserverCalls = integer('max-homeserver-calls', 1, 10_000);
  const settings: Settings = {
    serverName,
    homeserverUrl,
    host: text('host', undefined),
    port: integer('port', 1, 65535),
    datapath: text('datapath', undefined),
    database,
    databasePassword: pick('database-password') === undefined ? undefined : text('database-password', undefined),
    databasePasswordFile: sourceFileOf(pick('database-password'), 'database-password-source'),
    databasePool: integer('database-pool', 1, 100),
    pendingLeaseMs: pick('pending-lease') === undefined ? 2 * homeserverTimeoutMs : integer('pending-lease', 1, 7200) * 1000,
    backend,
    sharedSecret: text('sharesecret', requiredFor('shared-secret', "the homeserver's registration_shared_secret: --sharesecret-file FILE")),
    sharedSecretFile: sourceFileOf(pick('sharesecret'), 'sharesecret-source'),
    adminToken: text('admin-token', requiredFor('admin-api', "a homeserver admin's access token: --admin-token-file FILE")),
    adminTokenFile: sourceFileOf(pick('admin-token'), 'admin-token-source'),
    allowPasswordReset: flag('allow-password-reset'),
    asToken: text('astoken', required('as_token of the application service: --registration registration.yaml')),
    hsToken: text('hstoken', required('hs_token of the application service: --registration registration.yaml')),
    appserviceId: pick('appservice-id') === undefined ? undefined : text('appservice-id', undefined),
    appserviceUserRegexes: String(pick('appservice-user-regexes')?.value ?? '')
      .split('\n')
      .filter((regex) => regex !== ''),
    appserviceExclusiveRegexes: String(pick('appservice-exclusive-regexes')?.value ?? '')
      .split('\n')
      .filter((regex) => regex !== ''),
    registrationFile: pick('appservice-file') === undefined ? undefined : String(pick('appservice-file')?.value),
    logfile: optionalPath('logfile'),
    basePath,
    verbosity,
    homeserverTimeoutMs,
    loginAfterRegister: flag('login-after-register'),
    trustedProxies: text('trusted-proxies', undefined),
    rateLimitClientPerMinute: integer('rate-limit-client', 0, 1_000_000),
    rateLimitNodePerMinute: integer('rate-limit-node', 0, 1_000_000),
    rateLimitIpv6Prefix: integer('rate-limit-ipv6-prefix', 32, 128),
    accountCeilings: {
      ipv4: integer('accounts-per-hour-ipv4', 0, 10_000_000),
      ipv4Network: integer('accounts-per-hour-ipv4-24', 0, 10_000_000),
      ipv6Subscriber: integer('accounts-per-hour-ipv6-64', 0, 10_000_000),
      ipv6Site: integer('accounts-per-hour-ipv6-56', 0, 10_000_000),
      ipv6Organization: integer('accounts-per-hour-ipv6-48', 0, 10_000_000),
      perHour: integer('accounts-per-hour', 0, 100_000_000),
      perDay: integer('accounts-per-day', 0, 100_000_000),
    },
    workers,
    refusalSummaryIntervalMs: integer('refusal-summary-interval', 1, 3600) * 1000,
    maxHomeserverCalls,
    maxQueued: integer('max-queued', 0, 1_000_000),
    clientTimeoutMs: integer('client-timeout', 1, 3600) * 1000,
    maxConnections: integer('max-connections', 1, 1_000_000),
    // The primary also holds the homeserver calls' sockets and the store's files on its listener's descriptors: by
    // default it leaves them room.
    primaryMaxConnections:
      pick('max-connections')?.source === 'default'
        ? Math.max(16, integer('max-connections', 1, 1_000_000) - maxHomeserverCalls - PRIMARY_DESCRIPTORS - workers)
        : integer('max-connections', 1, 1_000_000),
    allowList: optionalPath('allow-list'),
    denyList: optionalPath('deny-list'),
    metricsPort: integer('metrics-port', 0, 65535),
    metricsHost: text('metrics-host', undefined),
  };

  for (const key of SECRET_KEYS) {
    if (pick(key)?.source === COMMAND_LINE) {
      warnings.push(
        `--${key} was given on the command line, where other local users can read it (ps, /proc); ` +
          'use --sharesecret-file and --registration instead',
      );
    }
  }

  for (const key of ['host', 'metrics-host'] as const) {
    const value = key === 'host' ? settings.host : settings.metricsHost;
    if (value !== '' && isIP(value) === 0 && !LISTEN_HOSTNAME.test(value))
      problems.push(`${key} must be an IP address or a host name, got "${value}"`);
  }
  try {
    proxyaddr.compile(settings.trustedProxies.split(',').map((entry) => entry.trim()));
  } catch (error) {
    problems.push(
      `trusted-proxies must be comma-separated addresses, CIDRs, loopback, linklocal or uniquelocal: ${(error as Error).message}`,
    );
  }
  if (settings.loginAfterRegister && backend === 'admin-api') {
    problems.push('login-after-register works with the shared-secret backend (appservice always returns a token), not admin-api');
  }
  if (settings.allowPasswordReset && backend !== 'admin-api') {
    problems.push('allow-password-reset needs --backend admin-api');
  }
  if (problems.length > 0) throw new SettingsError(problems);
  return { settings, warnings };
}
