import { execFile } from 'node:child_process';
import { chmodSync, chownSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from './ports.js';
import { tempDir } from './tempDir.js';

const run = promisify(execFile);

/** The superuser's password: TCP connections need one (scram-sha-256), as on a real deployment. */
export const PG_PASSWORD = 'test-pg-password';

/** A real PostgreSQL server from Debian's postgresql package, in a temporary directory, run by an unprivileged user. */
export interface PostgresServer {
  readonly port: number;
  readonly dir: string;
  /** A new, empty database; its URL carries no password (give PG_PASSWORD separately). */
  createDatabase(): Promise<string>;
  /** URL with the password in it, for in-process tests. */
  withPassword(url: string): string;
  /** Stops the server (fast shutdown: sessions are cut), keeping its data. */
  stop(): Promise<void>;
  start(): Promise<void>;
}

function serverBinaries(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((entry) => existsSync(join(root, entry, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions[0] === undefined) {
    throw new Error('no PostgreSQL server under /usr/lib/postgresql: apt-get install postgresql (.ci/run installs it)');
  }
  return join(root, versions[0], 'bin');
}

const NOBODY = { uid: 65534, gid: 65534 };

/** initdb and postgres refuse to run as root: as root, the server runs as nobody. */
function asServerUser(): { uid: number; gid: number } | Record<string, never> {
  return process.getuid?.() === 0 ? NOBODY : {};
}

export async function startPostgres(): Promise<PostgresServer> {
  const bin = serverBinaries();
  const dir = tempDir('regservice-pg-');
  const data = join(dir, 'data');
  const user = asServerUser();
  if ('uid' in user) chownSync(dir, user.uid, user.gid);
  chmodSync(dir, 0o700);
  const pwfile = join(dir, 'pwfile');
  writeFileSync(pwfile, `${PG_PASSWORD}\n`);
  if ('uid' in user) chownSync(pwfile, user.uid, user.gid);
  const options = { ...user, cwd: dir };
  await run(
    join(bin, 'initdb'),
    ['-D', data, '-U', 'postgres', `--pwfile=${pwfile}`, '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--no-sync'],
    options,
  );
  const port = await freePort();
  const serverOptions = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off`;
  const start = async (): Promise<void> => {
    await run(join(bin, 'pg_ctl'), ['-D', data, '-l', join(dir, 'server.log'), '-o', serverOptions, '-w', '-t', '60', 'start'], options);
  };
  const stop = async (): Promise<void> => {
    await run(join(bin, 'pg_ctl'), ['-D', data, '-m', 'fast', '-w', '-t', '60', 'stop'], options);
  };
  await start();
  // The server outlives a test process that fails: stop it (SIGINT: fast shutdown) when this one exits.
  process.once('exit', () => {
    const pid = serverPid(data);
    if (pid === undefined) return;
    try {
      process.kill(pid, 'SIGINT');
    } catch {
      // already stopped
    }
  });
  let databases = 0;
  const withPassword = (url: string): string => url.replace('postgresql://postgres@', `postgresql://postgres:${PG_PASSWORD}@`);
  return {
    port,
    dir,
    withPassword,
    async createDatabase() {
      databases += 1;
      const name = `regservice_${process.pid}_${databases}`;
      const admin = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password: PG_PASSWORD, database: 'postgres' });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE ${name}`);
      } finally {
        await admin.end();
      }
      return `postgresql://postgres@127.0.0.1:${port}/${name}?sslmode=disable`;
    },
    stop,
    start,
  };
}

function serverPid(data: string): number | undefined {
  const path = join(data, 'postmaster.pid');
  if (!existsSync(path)) return undefined;
  const pid = Number(readFileSync(path, 'utf8').split('\n')[0]);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}
