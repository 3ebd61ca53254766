import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from './ports.js';
import type { Scope } from './scope.js';

export interface RunningNginx {
  stop(): Promise<void>;
  errorLog(): string;
}

/** Whether the real nginx (Debian package nginx-light) is here; in CI it must be. */
export function nginxAvailability(): { available: boolean; reason: string } {
  const found = spawnSync('nginx', ['-v']).status === 0;
  if (!found && process.env.CI === 'true') throw new Error('nginx is not installed: .ci/run installs the Debian package nginx-light');
  return found
    ? { available: true, reason: 'nginx' }
    : { available: false, reason: 'nginx is not installed (apt-get install nginx-light)' };
}

/** Writes a minimal main config including the site and has nginx check it (nginx -t); returns the config's path. */
export function checkNginxSite(dir: string, siteFile: string): { ok: boolean; conf: string; output: string } {
  mkdirSync(join(dir, 'temp'), { recursive: true });
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `daemon off;
${process.getuid?.() === 0 ? 'user root root;' : ''}
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events {}
http {
  access_log off;
  client_body_temp_path ${dir}/temp/body;
  proxy_temp_path ${dir}/temp/proxy;
  fastcgi_temp_path ${dir}/temp/fastcgi;
  uwsgi_temp_path ${dir}/temp/uwsgi;
  scgi_temp_path ${dir}/temp/scgi;
  include ${siteFile};
}
`,
  );
  const test = spawnSync('nginx', ['-t', '-c', conf, '-p', dir], { encoding: 'utf8' });
  return { ok: test.status === 0, conf, output: test.stderr };
}

/** Runs nginx in the foreground with the rendered site included in a minimal main config. */
export async function startNginx(scope: Scope, dir: string, siteFile: string, port: number): Promise<RunningNginx> {
  const { ok, conf, output } = checkNginxSite(dir, siteFile);
  if (!ok) throw new Error(`nginx -t failed:\n${output}`);
  const child = spawn('nginx', ['-c', conf, '-p', dir], { stdio: 'ignore' });
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGQUIT');
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(killer);
  };
  scope.after(stop);
  process.once('exit', () => child.kill('SIGKILL'));
  const errorLog = (): string => {
    try {
      return readFileSync(join(dir, 'error.log'), 'utf8');
    } catch {
      return '';
    }
  };
  await waitFor(
    `nginx on port ${port}`,
    async () => {
      await fetch(`http://127.0.0.1:${port}/`);
      return true;
    },
    10_000,
    () => (child.exitCode !== null ? `nginx exited ${child.exitCode}: ${errorLog()}` : undefined),
  );
  return { errorLog, stop };
}
