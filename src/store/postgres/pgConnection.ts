import { createHash } from 'node:crypto';
import pg from 'pg';
import { checkTrustedFile, UntrustedFileError } from '../../config/trustedFile.js';
import { parse } from 'pg-connection-string';
import { storeRetryLater } from '../../protocol/matrixError.js';
import { databaseUrlProblem, describeDatabaseUrl } from '../../config/databaseUrl.js';
import { StoreOpenError } from '../store.js';

export interface PostgresOptions {
  /** postgresql://user@host:port/database?sslmode=…, as libpq reads it (a password in it is allowed, a file is better). */
  readonly url: string;
  /** From --database-password-file; wins over a password in the URL. */
  readonly password?: string | undefined;
  /** Connections this process may open at most. */
  readonly poolSize: number;
  readonly connectTimeoutMs?: number;
  /** Called with a connection's failure that no query was waiting for (the pool replaces the connection). */
  readonly onIdleError?: (error: Error) => void;
}

type SslMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';

type Tls = pg.ClientConfig['ssl'];

/** The TLS settings to try, in order, for libpq's sslmode (its default is prefer): allow and prefer fall back. */
function tlsAttempts(mode: SslMode, verifying: Tls): readonly Tls[] {
  const base = typeof verifying === 'object' ? verifying : {};
  const unverified: Tls = { ...base, rejectUnauthorized: false };
  switch (mode) {
    case 'disable':
      return [false];
    case 'allow':
      return [false, unverified];
    case 'prefer':
      return [unverified, false];
    default:
      // require (verify-ca when sslrootcert is given), verify-ca, verify-full: as pg-connection-string's libpq mode reads them.
      return [verifying];
  }
}

const sqlState = (error: unknown): string | undefined => {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
};

/**
 * A failure that a retry may cure: the server is down, restarting, overloaded, the connection broke, or the statement
 * was chosen to end a deadlock or a serialization conflict (class 40).
 */
export function isUnavailable(error: unknown): boolean {
  const code = sqlState(error);
  return code === undefined || /^(08|40|53|57|58)/.test(code);
}

/** Deadlock detected, serialization failure: the statement was rolled back whole, and running it again is safe. */
const isConflict = (error: unknown): boolean => sqlState(error) === '40P01' || sqlState(error) === '40001';

/** Tries after the first, for a statement that lost a deadlock or a serialization conflict. */
const CONFLICT_RETRIES = 3;

const statementNames = new Map<string, string>();

/** The same name for the same text: PostgreSQL parses and plans each statement once per connection, not per call. */
function statementName(text: string): string {
  let name = statementNames.get(text);
  if (name === undefined) {
    name = `regservice_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    statementNames.set(text, name);
  }
  return name;
}

/**
 * Runs one of the service's statements (always a constant text) as a prepared statement; a failure a retry may cure
 * becomes 503 with Retry-After, anything else stays a bug.
 */
export async function query<R extends pg.QueryResultRow>(
  pool: pg.Pool,
  text: string,
  values: readonly unknown[] = [],
): Promise<pg.QueryResult<R>> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await pool.query<R>({ name: statementName(text), text, values: values as unknown[] });
    } catch (error) {
      if (!isConflict(error) || attempt === CONFLICT_RETRIES) throw unavailableOr(error);
      // Each statement is its own transaction: a little random wait, and the two sides rarely meet again.
      await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20 * (attempt + 1)));
    }
  }
}

function unavailableOr(error: unknown): unknown {
  if (isConflict(error)) return storeRetryLater('the registry database is busy; retry later', 1000);
  return isUnavailable(error) ? storeRetryLater('the registry database is unavailable; retry later', 5000) : error;
}

/** Runs `work` in one transaction on one connection; errors pass through as they are. */
export async function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    client.release();
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    client.release(isUnavailable(error));
    throw error;
  }
}

/** The server has no TLS (prefer falls back to plain text), or its pg_hba.conf wants TLS (allow falls back to TLS). */
const TLS_REFUSAL = /does not support SSL|no encryption|SSL (off|required)/i;

/** pg's words when the server asks for a password (SCRAM or md5) and none was given. */
const NO_PASSWORD = /client password must be a string|password authentication failed.*no password supplied/i;

function connectionFailure(url: string, error: unknown): StoreOpenError {
  const message = (error as Error).message;
  const reason = NO_PASSWORD.test(message)
    ? 'the server asks for a password and none was given: put it alone in a file (mode 0600) and give --database-password-file FILE'
    : message;
  return new StoreOpenError('unavailable', `cannot connect to the database ${describeDatabaseUrl(url)}: ${reason}`);
}

/**
 * A pool of at most `poolSize` connections. The TLS choice is made once here, by connecting as libpq would for the
 * URL's sslmode: allow and prefer fall back to the other choice when the server refuses the first.
 */
export async function openPool(options: PostgresOptions): Promise<pg.Pool> {
  const problem = databaseUrlProblem(options.url);
  if (problem !== undefined) throw new StoreOpenError('unavailable', `--database ${describeDatabaseUrl(options.url)} ${problem}`);
  let parsedUrl: ReturnType<typeof parse>;
  try {
    // The certificate files pg-connection-string reads: refused, as every file the service trusts, if others may write them.
    const params = new URL(options.url).searchParams;
    for (const name of ['sslrootcert', 'sslcert', 'sslkey']) {
      const file = params.get(name);
      if (file !== null) checkTrustedFile(file, `the database URL's ${name}`);
    }
    parsedUrl = parse(options.url, { useLibpqCompat: true });
  } catch (error) {
    if (error instanceof UntrustedFileError) throw error;
    // e.g. verify-ca without sslrootcert, or a certificate file that cannot be read: libpq refuses those too.
    throw new StoreOpenError('unavailable', `--database ${describeDatabaseUrl(options.url)}: ${(error as Error).message}`);
  }
  const { ssl, sslmode, password, ...parsed } = parsedUrl;
  const mode = (typeof sslmode === 'string' ? sslmode : 'prefer') as SslMode;
  const base: pg.ClientConfig = {
    ...(parsed as pg.ClientConfig),
    port: parsed.port === null || parsed.port === undefined || parsed.port === '' ? undefined : Number(parsed.port),
    host: parsed.host ?? undefined,
    database: parsed.database ?? undefined,
    password: options.password ?? (typeof password === 'string' && password !== '' ? password : undefined),
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
    query_timeout: 10_000,
    application_name: 'matrix-regservice',
  };
  let lastError: unknown;
  for (const tls of tlsAttempts(mode, ssl as Tls)) {
    const client = new pg.Client({ ...base, ssl: tls });
    try {
      await client.connect();
      await client.end();
    } catch (error) {
      await client.end().catch(() => undefined);
      // Only a refusal of the TLS choice itself tries the other one: a wrong password is a wrong password either way.
      if (!TLS_REFUSAL.test((error as Error).message)) throw connectionFailure(options.url, error);
      lastError = error;
      continue;
    }
    const pool = new pg.Pool({ ...base, ssl: tls, max: options.poolSize, idleTimeoutMillis: 30_000 });
    // Without a listener, a connection that breaks while idle (the server restarting) would crash the process.
    pool.on('error', (error) => options.onIdleError?.(error));
    return pool;
  }
  throw connectionFailure(options.url, lastError);
}
