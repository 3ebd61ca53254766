/** Every setting the daemon reads, with its flag, environment variable and config-file key. */
export type OptionKind = 'string' | 'secret' | 'path' | 'integer' | 'boolean';

/**
 * What genconfig does with a setting given to it: `written` ones it writes into run.sh (or regservice.yaml) itself,
 * `tokens` become the registration's, `refused` ones it refuses (they name what genconfig writes); every other one is
 * carried into run.sh as a flag (regservice.yaml as a key) as given.
 */
export type GenconfigUse = 'written' | 'tokens' | 'refused';

export interface OptionSpec {
  readonly key: string;
  readonly kind: OptionKind;
  readonly argName?: string;
  readonly description: string;
  readonly genconfig?: GenconfigUse;
  /** Gates sharing one database must agree on it (shared counters, one registry): each warns at start when they do not. */
  readonly shared?: true;
}

export const OPTION_SPECS = [
  {
    key: 'matrixdomain',
    shared: true,
    genconfig: 'written',
    kind: 'string',
    argName: '<domain>',
    description: 'server_name of the homeserver (the part after ":" in user ids)',
  },
  { key: 'matrixurl', genconfig: 'written', kind: 'string', argName: '<url>', description: 'homeserver base URL' },
  { key: 'host', genconfig: 'written', kind: 'string', argName: '<address>', description: 'address to listen on' },
  { key: 'port', genconfig: 'written', kind: 'integer', argName: '<port>', description: 'port to listen on' },
  {
    key: 'datapath',
    genconfig: 'written',
    kind: 'path',
    argName: '<dir>',
    description: 'directory of the LevelDB state (when there is no --database)',
  },
  {
    key: 'database',
    genconfig: 'written',
    kind: 'string',
    argName: '<url>',
    description: 'postgresql:// URL (libpq style, sslmode honoured) of a PostgreSQL database several gates share, instead of LevelDB',
  },
  {
    key: 'database-password-file',
    genconfig: 'written',
    kind: 'path',
    argName: '<file>',
    description: "file holding the database user's password",
  },
  { key: 'database-pool', kind: 'integer', argName: '<n>', description: 'connections to PostgreSQL this gate opens at most' },
  {
    key: 'pending-lease',
    shared: true,
    kind: 'integer',
    argName: '<seconds>',
    description: 'how long a registration in progress keeps other gates from registering the node; then it is reconciled',
  },
  {
    key: 'registration',
    genconfig: 'refused',
    kind: 'path',
    argName: '<file>',
    description: 'application-service registration.yaml: id, url, as_token, hs_token',
  },
  {
    key: 'backend',
    shared: true,
    genconfig: 'written',
    kind: 'string',
    argName: '<name>',
    description: 'how users are created: shared-secret, admin-api or appservice',
  },
  {
    key: 'sharesecret',
    genconfig: 'written',
    kind: 'secret',
    argName: '<secret>',
    description: "homeserver's registration_shared_secret (prefer --sharesecret-file)",
  },
  {
    key: 'sharesecret-file',
    genconfig: 'written',
    kind: 'path',
    argName: '<file>',
    description: 'file holding the registration_shared_secret',
  },
  {
    key: 'admin-token-file',
    genconfig: 'written',
    kind: 'path',
    argName: '<file>',
    description: 'file holding a homeserver admin access token (backend admin-api)',
  },
  {
    key: 'allow-password-reset',
    shared: true,
    genconfig: 'written',
    kind: 'boolean',
    description: 'admin-api: reset the password of an existing user to its signature instead of 409',
  },
  { key: 'astoken', genconfig: 'tokens', kind: 'secret', argName: '<token>', description: 'as_token (prefer --registration)' },
  { key: 'hstoken', genconfig: 'tokens', kind: 'secret', argName: '<token>', description: 'hs_token (prefer --registration)' },
  {
    key: 'verbosity',
    genconfig: 'written',
    kind: 'integer',
    argName: '<0-5>',
    description: 'log level: 0 critical, 1 error, 2 warn, 3 info, 4 debug, 5 trace',
  },
  { key: 'logfile', kind: 'path', argName: '<file>', description: 'append log lines to this file instead of standard error' },
  { key: 'homeserver-timeout', shared: true, kind: 'integer', argName: '<seconds>', description: 'timeout of one homeserver call' },
  {
    key: 'trusted-proxies',
    kind: 'string',
    argName: '<list>',
    description: 'proxies whose X-Forwarded-For is believed: comma-separated addresses, CIDRs, loopback, uniquelocal',
  },
  {
    key: 'rate-limit-client',
    shared: true,
    kind: 'integer',
    argName: '<n>',
    description: 'registration requests per minute from one client address, 0 = no limit',
  },
  {
    key: 'rate-limit-node',
    shared: true,
    kind: 'integer',
    argName: '<n>',
    description: 'registration requests per minute for one node address, counted once its signatures verified; 0 = no limit',
  },
  {
    key: 'rate-limit-ipv6-prefix',
    shared: true,
    kind: 'integer',
    argName: '<bits>',
    description: 'IPv6 clients are limited per network of this prefix length, 32-128',
  },
  {
    key: 'accounts-per-hour-ipv4',
    shared: true,
    kind: 'integer',
    argName: '<n>',
    description: 'new accounts per hour from one IPv4 address, 0 = no ceiling',
  },
  {
    key: 'accounts-per-hour-ipv4-24',
    shared: true,
    kind: 'integer',
    argName: '<n>',
    description: 'new accounts per hour from one IPv4 /24, 0 = no ceiling',
  },
  {
    key: 'accounts-per-hour-ipv6-64',
    shared: true,
    kind: 'integer',
    argName: '<n>',
    description: 'new accounts per hour from one IPv6 /64, 0 = no ceiling',
  },
  {
    key: 'accounts-per-hour-ipv6-56',
    shared: true,
    kind: 'integer',
    argName: '<n>',
    description: 'new accounts per hour from one IPv6 /56, 0 = no ceiling',
  },
  {
    key: 'accounts-per-hour-ipv6-48',
    shared: true,
    kind: 'integer',
    argName: '<n>',
    description: 'new accounts per hour from one IPv6 /48, 0 = no ceiling',
  },
  {
    key: 'accounts-per-hour',
    shared: true,
    kind: 'integer',
    argName: '<n>',
    description: 'new accounts per hour on the whole service (every gate of a database), 0 = no ceiling',
  },
  {
    key: 'accounts-per-day',
    shared: true,
    kind: 'integer',
    argName: '<n>',
    description: 'new accounts per day on the whole service, 0 = no ceiling',
  },
  {
    key: 'workers',
    kind: 'integer',
    argName: '<n>',
    description: 'worker processes serving requests beside the primary, which serves them too; 0 = one process',
  },
  {
    key: 'refusal-summary-interval',
    kind: 'integer',
    argName: '<seconds>',
    description: 'log refused requests as one summary line per this many seconds; --verbosity 4 logs each',
  },
  { key: 'max-homeserver-calls', kind: 'integer', argName: '<n>', description: 'registrations at the homeserver at once' },
  { key: 'max-queued', kind: 'integer', argName: '<n>', description: 'registrations waiting for a homeserver slot before 503' },
  { key: 'client-timeout', kind: 'integer', argName: '<seconds>', description: 'time a client has to send its headers and body' },
  {
    key: 'max-connections',
    kind: 'integer',
    argName: '<n>',
    description: 'connections each process serving holds at once; past it a new one is closed at once and counted',
  },
  {
    key: 'allow-list',
    shared: true,
    kind: 'path',
    argName: '<file>',
    description: 'only these node addresses may register (one 0x address a line; reloaded on SIGHUP)',
  },
  {
    key: 'deny-list',
    shared: true,
    kind: 'path',
    argName: '<file>',
    description: 'these node addresses may not register (reloaded on SIGHUP)',
  },
  { key: 'metrics-port', kind: 'integer', argName: '<port>', description: 'serve /metrics, /health and /ready on this port' },
  { key: 'metrics-host', kind: 'string', argName: '<address>', description: 'address of the metrics listener' },
  {
    key: 'login-after-register',
    kind: 'boolean',
    description: 'log the new user in and return access_token and device_id instead of inhibit_login',
  },
] as const satisfies readonly OptionSpec[];

export type SettingKey = (typeof OPTION_SPECS)[number]['key'];

export const ENV_PREFIX = 'MATRIX_REGSERVICE_';

export function envName(key: string): string {
  return ENV_PREFIX + key.toUpperCase().replaceAll('-', '_');
}

export function isSettingKey(key: string): key is SettingKey {
  return OPTION_SPECS.some((spec) => spec.key === key);
}
