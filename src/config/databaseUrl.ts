/** libpq's sslmode values. */
const SSL_MODES: readonly string[] = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];

/**
 * Query parameters that carry a secret, as libpq reads a URL: the password (its other way of giving one) and the
 * passphrase of the client key. Each is treated as the password in the URL's userinfo is: masked, warned of, refused
 * in run.sh.
 */
const SECRET_PARAMETERS: readonly string[] = ['password', 'sslpassword'];
const MASK = '***';

function parsed(url: string): URL | undefined {
  try {
    return new URL(url);
  } catch {
    return undefined;
  }
}

/** A %-encoded part decoded, or undefined where a % is not followed by two hex digits. */
function decoded(part: string): string | undefined {
  try {
    return decodeURIComponent(part);
  } catch {
    return undefined;
  }
}

/** The URL without its secrets, for logs and messages. */
export function describeDatabaseUrl(url: string): string {
  const parts = parsed(url);
  if (parts === undefined) return 'postgresql://(unparsable URL)';
  if (parts.password !== '') parts.password = MASK;
  for (const name of SECRET_PARAMETERS) if (parts.searchParams.has(name)) parts.searchParams.set(name, MASK);
  return parts.toString().replaceAll(encodeURIComponent(MASK), MASK);
}

/** A URL the service accepts as --database, or the reason it does not. */
export function databaseUrlProblem(url: string): string | undefined {
  if (!/^postgres(ql)?:\/\//.test(url)) return 'must be a postgresql:// URL';
  const parts = parsed(url);
  if (parts === undefined) return 'is not a URL';
  if ([parts.username, parts.password, parts.pathname].some((part) => decoded(part) === undefined))
    return 'has a % that is not followed by two hex digits in its user, password or database name: write a % there as %25';
  const mode = parts.searchParams.get('sslmode');
  if (mode !== null && !SSL_MODES.includes(mode)) return `sslmode must be one of ${SSL_MODES.join(', ')}, got "${mode}"`;
  if (parts.searchParams.has('passfile')) {
    return 'names a passfile, which this service does not read: put the password alone in a file (mode 0600) and give --database-password-file FILE';
  }
  return undefined;
}

/** The secrets a URL carries, decoded (none when unparsable): to scrub them from every log line. */
export function urlSecrets(url: string): string[] {
  const parts = parsed(url);
  if (parts === undefined) return [];
  // Both forms are scrubbed: a password that does not decode is still a password.
  const secrets = [parts.password, decoded(parts.password) ?? ''];
  for (const name of SECRET_PARAMETERS) secrets.push(...parts.searchParams.getAll(name));
  return secrets.filter((secret) => secret !== '');
}

/** Whether the URL gives the user's password, in its userinfo or as ?password=. */
export function urlGivesPassword(url: string): boolean {
  const parts = parsed(url);
  return parts !== undefined && (parts.password !== '' || (parts.searchParams.get('password') ?? '') !== '');
}

/** Whether the URL carries a password (in its userinfo or as a parameter) or another secret. */
export function urlHasPassword(url: string): boolean {
  return urlSecrets(url).length > 0;
}
