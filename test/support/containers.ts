import { execFile, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Scope } from './scope.js';
import { tempDir } from './tempDir.js';
import { waitFor } from './ports.js';
import { alive } from './processTree.js';

const run = promisify(execFile);
const CONTAINERS_CONF = new URL('../containers/containers.conf', import.meta.url).pathname;

/** podman's environment: this project's containers.conf, whatever the machine has. */
export const podmanEnv = (): NodeJS.ProcessEnv => ({ ...process.env, CONTAINERS_CONF });

export async function podman(args: readonly string[], options: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  const { stdout } = await run('podman', [...args], {
    env: podmanEnv(),
    maxBuffer: 64 * 1024 * 1024,
    timeout: options.timeoutMs ?? 300_000,
  });
  return stdout;
}

/** What a container wrote (standard output and error, as the service logs to standard error). */
export async function containerLogs(name: string): Promise<string> {
  const { stdout, stderr } = await run('podman', ['logs', name], { env: podmanEnv(), maxBuffer: 64 * 1024 * 1024 });
  return stdout + stderr;
}

const IMAGES_ENV = new URL('../containers/images.env', import.meta.url).pathname;

/** The test's images, named in test/containers/images.env (which test/containers/build-bases.sh reads too). */
function imageNames(): Record<string, string> {
  const names: Record<string, string> = {};
  for (const line of readFileSync(IMAGES_ENV, 'utf8').split('\n')) {
    const match = /^([A-Z_]+)=(\S+)$/.exec(line);
    if (match !== null) names[match[1] as string] = match[2] as string;
  }
  return names;
}

function imageName(names: Record<string, string>, key: string): string {
  const name = names[key];
  if (name === undefined) throw new Error(`${IMAGES_ENV} names no ${key}`);
  return name;
}

const names = imageNames();
export const IMAGES = {
  node: imageName(names, 'NODE_IMAGE'),
  nodeBuild: imageName(names, 'NODE_BUILD_IMAGE'),
  synapse: imageName(names, 'SYNAPSE_IMAGE'),
  nginx: imageName(names, 'NGINX_IMAGE'),
  postgres: imageName(names, 'POSTGRES_IMAGE'),
  prometheus: imageName(names, 'PROMETHEUS_IMAGE'),
  service: imageName(names, 'SERVICE_IMAGE'),
} as const;
/** The images test/containers/build-bases.sh makes (test/provision.sh runs it); the service's is built by the test. */
const BASES = [IMAGES.node, IMAGES.nodeBuild, IMAGES.synapse, IMAGES.nginx, IMAGES.postgres, IMAGES.prometheus];

const imageExists = (image: string): boolean => spawnSync('podman', ['image', 'exists', image], { env: podmanEnv() }).status === 0;

/**
 * Whether real containers can run here: podman, docker-compose, and the base images test/provision.sh builds. Skipped
 * with the reason where they cannot, failing in CI, as every real part does; skipped too once a CI run has tested them
 * (CONTAINER_TESTS=done: the suite runs again on other Node versions, and the images do not depend on the Node running
 * the tests).
 */
export function containerSkip(): string | false {
  if (process.env.CONTAINER_TESTS === 'done') return 'the containers were tested on the first run of this CI run';
  const missing = ['podman', 'docker-compose'].filter((tool) => spawnSync(tool, ['--version']).error !== undefined);
  let reason: string | undefined;
  if (missing.length > 0) reason = `${missing.join(', ')} not installed: run test/provision.sh first`;
  else if (process.getuid?.() !== 0) reason = 'not root: the container tests run rootful podman';
  else {
    const absent = BASES.filter((image) => !imageExists(image));
    if (absent.length > 0) reason = `no base image ${absent.join(', ')}: run test/provision.sh first`;
  }
  if (reason === undefined) return false;
  if (process.env.CI === 'true') throw new Error(`the container tests cannot run in CI: ${reason}`);
  return reason;
}

/** podman's Docker-compatible API on a socket of the test's own, for docker-compose (DOCKER_HOST); stopped by `scope`. */
export async function podmanSocket(scope: Scope): Promise<string> {
  const socket = join(tempDir('regservice-podman-'), 'podman.sock');
  const service = spawn('podman', ['system', 'service', '--time=0', `unix://${socket}`], { env: podmanEnv(), stdio: 'ignore' });
  scope.after(async () => {
    if (service.exitCode !== null) return;
    const exited = new Promise((resolve) => service.once('exit', resolve));
    service.kill('SIGTERM');
    await exited;
  });
  process.once('exit', () => service.kill('SIGKILL'));
  await waitFor('podman system service', async () => (existsSync(socket) ? true : undefined), 20_000);
  return `unix://${socket}`;
}

/**
 * Removes what a run of the container test that did not end (SIGKILL, a CI stop) left behind: its containers, volumes
 * and network, which holds the test's subnet so that no later run could create its own. A run's names begin with
 * `regsvc<pid>`; those of a process still alive are left alone.
 */
export async function removeEndedRuns(): Promise<void> {
  const ended = (name: string, pattern: RegExp): boolean => {
    const pid = pattern.exec(name)?.[1];
    return pid !== undefined && !alive(Number(pid));
  };
  const lines = async (args: readonly string[]): Promise<string[]> => (await podman(args)).split('\n').filter(Boolean);
  const containers = (await lines(['ps', '-a', '--format', '{{.Names}}'])).filter((name) => ended(name, /^regsvc(\d+)_/));
  if (containers.length > 0) await podman(['rm', '--force', ...containers]);
  const volumes = (await lines(['volume', 'ls', '--format', '{{.Name}}'])).filter((name) => ended(name, /^regsvc(\d+)-/));
  if (volumes.length > 0) await podman(['volume', 'rm', '--force', ...volumes]);
  for (const network of await lines(['network', 'ls', '--format', '{{.Name}}']))
    if (ended(network, /^regsvc(\d+)-/)) await podman(['network', 'rm', '--force', network]);
}
