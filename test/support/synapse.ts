import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { sharedSecretMac } from '../../src/protocol/sharedSecretMac.js';
import { freePort, waitFor } from './ports.js';
import type { Scope } from './scope.js';

/**
 * A real Synapse for the end-to-end tests: run from a Debian chroot built by
 * test/provision.sh (as root), or an existing one named by SYNAPSE_URL.
 */
export const SYNAPSE_ROOT = process.env.SYNAPSE_ROOT ?? '/var/tmp/matrix-regservice/synapse-root';

export interface SynapseAvailability {
  readonly available: boolean;
  readonly reason: string;
}

function chrootReady(): boolean {
  return existsSync(join(SYNAPSE_ROOT, 'usr/lib/python3/dist-packages/synapse/__init__.py'));
}

/** Whether the real-Synapse tests can run here. In CI they must: a missing Synapse is an error there. */
export function synapseAvailability(): SynapseAvailability {
  if (process.env.SYNAPSE_URL !== undefined) return { available: true, reason: `SYNAPSE_URL=${process.env.SYNAPSE_URL}` };
  if (process.getuid?.() === 0 && chrootReady()) return { available: true, reason: `chroot ${SYNAPSE_ROOT}` };
  const reason =
    process.getuid?.() === 0
      ? `no Synapse chroot at ${SYNAPSE_ROOT}: run test/provision.sh first (or set SYNAPSE_URL)`
      : 'not root, so no Synapse chroot can be run: run as root after test/provision.sh, or set SYNAPSE_URL';
  if (process.env.CI === 'true') throw new Error(`real-Synapse tests cannot run in CI: ${reason}`);
  return { available: false, reason };
}

/** node:test `skip` for suites that start their own Synapse (they cannot use SYNAPSE_URL). */
export function ownSynapseSkip(): string | false {
  const availability = synapseAvailability();
  if (!availability.available) return availability.reason;
  return process.env.SYNAPSE_URL === undefined ? false : 'needs a Synapse it starts itself (not SYNAPSE_URL)';
}

export interface SynapseConfig {
  readonly serverName: string;
  /** Host paths of application-service registration files to load. */
  readonly appserviceFiles?: readonly string[];
  /** Host path of a file holding the shared secret (registration_shared_secret_path). */
  readonly sharedSecretFile: string;
  /** Port to serve on; chosen beforehand when the registration must name the homeserver URL. */
  readonly port?: number;
  /** More homeserver.yaml lines, e.g. privacy settings a test runs under. */
  readonly extraConfig?: string;
  /** Files to put in Synapse's config directory (which is also its working directory), by name. */
  readonly files?: Readonly<Record<string, string>>;
  /** app_service_config_files entries as written, e.g. a path relative to Synapse's working directory. */
  readonly appserviceEntries?: readonly string[];
}

export interface RunningSynapse {
  readonly url: string;
  /** Synapse's config and working directory, as this host sees it (chroot mode only). */
  readonly hostDir: string;
  readonly serverName: string;
  readonly sharedSecret: string;
  /** Synapse's own log so far (chroot mode only). */
  log(): string;
  stop(): Promise<void>;
  /** Stops Synapse and starts it again on the homeserver.yaml in hostDir as it is now (chroot mode only). */
  restart(): Promise<void>;
  /** Stops Synapse, keeping its files, for an outage that `resume` ends (chroot mode only). */
  halt(): Promise<void>;
  /** Starts Synapse again after `halt`, once it serves. */
  resume(): Promise<void>;
}

function homeserverYaml(dir: string, serverName: string, port: number, appserviceFiles: readonly string[], extraConfig = ''): string {
  return `server_name: "${serverName}"
pid_file: ${dir}/homeserver.pid
report_stats: false
listeners:
  - port: ${port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: true
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: ${dir}/homeserver.db
media_store_path: ${dir}/media_store
signing_key_path: ${dir}/signing.key
registration_shared_secret_path: registration_shared_secret  # relative: Synapse runs in its config directory
macaroon_secret_key: "test-macaroon"
form_secret: "test-form"
enable_registration: false
bcrypt_rounds: 4
suppress_key_server_warning: true
trusted_key_servers: []
app_service_config_files: [${appserviceFiles.map((file) => JSON.stringify(file)).join(', ')}]
rc_login:
  address: {per_second: 1000, burst_count: 1000}
  account: {per_second: 1000, burst_count: 1000}
  failed_attempts: {per_second: 1000, burst_count: 1000}
rc_registration: {per_second: 1000, burst_count: 1000}
rc_message: {per_second: 1000, burst_count: 1000}
rc_joins:
  local: {per_second: 1000, burst_count: 1000}
  remote: {per_second: 1000, burst_count: 1000}
log_config: ${dir}/log.yaml
${extraConfig}`;
}

const LOG_YAML = (dir: string): string => `version: 1
formatters:
  precise: {format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(message)s'}
handlers:
  file: {class: logging.FileHandler, formatter: precise, filename: ${dir}/homeserver.log}
root: {level: INFO, handlers: [file]}
disable_existing_loggers: false
`;

async function waitUntilServing(url: string, child: ChildProcess | undefined, log: () => string): Promise<void> {
  await waitFor(
    `Synapse at ${url}`,
    async () => {
      const response = await fetch(`${url}/_matrix/client/versions`);
      return response.ok ? true : undefined;
    },
    60_000,
    () => (child !== undefined && child.exitCode !== null ? `Synapse exited with ${child.exitCode}:\n${log().slice(-3000)}` : undefined),
  );
}

/** Starts a Synapse; `scope` stops it when the test or suite ends. */
export async function startSynapse(scope: Scope, config: SynapseConfig): Promise<RunningSynapse> {
  const sharedSecret = readFileSync(config.sharedSecretFile, 'utf8').trim();
  if (process.env.SYNAPSE_URL !== undefined) {
    const url = process.env.SYNAPSE_URL.replace(/\/+$/, '');
    await waitUntilServing(url, undefined, () => '');
    return {
      url,
      serverName: process.env.SYNAPSE_SERVER_NAME ?? config.serverName,
      sharedSecret: process.env.SYNAPSE_SHARED_SECRET ?? sharedSecret,
      hostDir: '',
      log: () => '',
      stop: async () => {},
      restart: async () => {},
      halt: async () => {},
      resume: async () => {},
    };
  }

  const hostDir = mkdtempSync(join(SYNAPSE_ROOT, 'tmp', 'hs-'));
  const dir = `/tmp/${basename(hostDir)}`;
  copyFileSync(config.sharedSecretFile, join(hostDir, 'registration_shared_secret'));
  const appserviceFiles = (config.appserviceFiles ?? []).map((file, index) => {
    copyFileSync(file, join(hostDir, `appservice-${index}.yaml`));
    return `${dir}/appservice-${index}.yaml`;
  });
  for (const [name, content] of Object.entries(config.files ?? {})) writeFileSync(join(hostDir, name), content);
  const port = config.port ?? (await freePort());
  const entries = [...appserviceFiles, ...(config.appserviceEntries ?? [])];
  writeFileSync(join(hostDir, 'homeserver.yaml'), homeserverYaml(dir, config.serverName, port, entries, config.extraConfig));
  writeFileSync(join(hostDir, 'log.yaml'), LOG_YAML(dir));

  // Run from its config directory, as the Go original's README has it: relative app_service_config_files resolve there.
  const python = `chroot "$R" sh -c 'cd ${dir} && exec python3 -m synapse.app.homeserver -c ${dir}/homeserver.yaml "$@"' synapse`;
  // A private mount namespace: /proc and /dev inside the chroot vanish with the process.
  const script = `mount -t proc proc "$R/proc" && mount --rbind /dev "$R/dev" && ${python} --generate-keys && exec ${python}`;
  let output = '';
  const log = (): string => {
    const file = join(hostDir, 'homeserver.log');
    return output + (existsSync(file) ? readFileSync(file, 'utf8') : '');
  };
  const url = `http://127.0.0.1:${port}`;
  const launch = (): ChildProcess => {
    const started = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], {
      env: { ...process.env, R: SYNAPSE_ROOT },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const collect = (chunk: Buffer): void => {
      output = (output + chunk.toString()).slice(-20_000);
    };
    started.stdout?.on('data', collect);
    started.stderr?.on('data', collect);
    // The last resort, when the test process ends without its after hooks (killed by the test runner's timeout).
    const lastResort = (): void => {
      if (started.exitCode === null && started.signalCode === null && started.pid !== undefined) process.kill(-started.pid, 'SIGKILL');
    };
    process.once('exit', lastResort);
    started.once('exit', () => process.off('exit', lastResort));
    return started;
  };
  let child = launch();
  const halt = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      process.kill(-child.pid, 'SIGTERM');
      const timer = setTimeout(() => child.pid !== undefined && process.kill(-child.pid, 'SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
  };
  const stop = async (): Promise<void> => {
    await halt();
    rmSync(hostDir, { recursive: true, force: true });
  };
  scope.after(stop);
  await waitUntilServing(url, child, log);
  const resume = async (): Promise<void> => {
    child = launch();
    await waitUntilServing(url, child, log);
  };
  const restart = async (): Promise<void> => {
    await halt();
    await resume();
  };
  return { url, hostDir, serverName: config.serverName, sharedSecret, log, stop, restart, halt, resume };
}

export interface SharedSecretUser {
  readonly username: string;
  readonly password: string;
  readonly admin?: boolean;
  readonly displayname?: string;
}

/** Synapse's shared-secret registration, done directly (as an operator's script or the Go original would). */
export async function sharedSecretRegister(
  synapse: RunningSynapse,
  user: SharedSecretUser,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const endpoint = `${synapse.url}/_synapse/admin/v1/register`;
  const { nonce } = (await (await fetch(endpoint)).json()) as { nonce: string };
  const admin = user.admin ?? false;
  const mac = sharedSecretMac(synapse.sharedSecret, { nonce, username: user.username, password: user.password, admin });
  const response = await fetch(endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ nonce, ...user, admin, mac, inhibit_login: !admin }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** Registers a Synapse admin through shared-secret registration and returns its access token. */
export async function createAdmin(synapse: RunningSynapse, username: string, password: string): Promise<string> {
  const answer = await sharedSecretRegister(synapse, { username, password, admin: true });
  if (answer.status !== 200 || typeof answer.body.access_token !== 'string')
    throw new Error(`admin registration failed: ${JSON.stringify(answer.body)}`);
  return answer.body.access_token;
}

/** The directory, inside the chroot, of the homeserver.yaml readConfigWithSynapse checks: its text may name it. */
export const CONFIG_CHECK_DIR = '/tmp/regservice-config-check';

/** Has the chroot's Synapse read a homeserver.yaml (`python3 -m synapse.config -c FILE`, after generating its keys) and PyYAML load it. */
export function readConfigWithSynapse(text: string): { accepted: boolean; output: string; values: unknown } {
  const hostDir = join(SYNAPSE_ROOT, CONFIG_CHECK_DIR);
  rmSync(hostDir, { recursive: true, force: true });
  mkdirSync(hostDir, { recursive: true });
  const file = `${CONFIG_CHECK_DIR}/homeserver.yaml`;
  try {
    writeFileSync(join(hostDir, 'homeserver.yaml'), text);
    writeFileSync(join(hostDir, 'log.yaml'), LOG_YAML(CONFIG_CHECK_DIR));
    const inChroot = (args: readonly string[]) => spawnSync('chroot', [SYNAPSE_ROOT, ...args], { encoding: 'utf8' });
    const keys = inChroot(['python3', '-m', 'synapse.app.homeserver', '-c', file, '--generate-keys']);
    const check = inChroot(['python3', '-m', 'synapse.config', '-c', file]);
    const load = inChroot([
      'python3',
      '-c',
      'import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1])), default=str))',
      file,
    ]);
    return {
      accepted: keys.status === 0 && check.status === 0 && /Config parses OK!/.test(check.stdout),
      output: `${keys.stderr}${check.stdout}${check.stderr}`,
      values: load.status === 0 ? (JSON.parse(load.stdout) as unknown) : load.stderr,
    };
  } finally {
    rmSync(hostDir, { recursive: true, force: true });
  }
}

/**
 * Has the chroot's Synapse read a Debian-style configuration, homeserver.yaml and conf.d/ given as two --config-path
 * arguments as the package's unit gives them, and returns what it made of `keys` (`synapse.config read`, e.g.
 * `appservice.app_service_config_files`). `files` are the configuration's files by relative path; the signing key is
 * generated aside (a conf.d file of the check's own names it).
 */
export function readDebianConfigWithSynapse(
  files: Readonly<Record<string, string>>,
  keys: readonly string[],
  /** Files the configuration names by this host's absolute paths: copied to the same paths in the chroot meanwhile. */
  named: readonly string[] = [],
): Record<string, string> {
  const hostDir = join(SYNAPSE_ROOT, CONFIG_CHECK_DIR);
  rmSync(hostDir, { recursive: true, force: true });
  mkdirSync(join(hostDir, 'conf.d'), { recursive: true });
  const mirrored = named.map((path) => join(SYNAPSE_ROOT, path));
  try {
    named.forEach((path, index) => {
      mkdirSync(dirname(mirrored[index] as string), { recursive: true });
      copyFileSync(path, mirrored[index] as string);
    });
    for (const [name, content] of Object.entries(files)) writeFileSync(join(hostDir, name), content);
    writeFileSync(join(hostDir, 'conf.d', '00-check.yaml'), `signing_key_path: ${CONFIG_CHECK_DIR}/signing.key\n`);
    const paths = ['--config-path', `${CONFIG_CHECK_DIR}/homeserver.yaml`, '--config-path', `${CONFIG_CHECK_DIR}/conf.d/`];
    const inChroot = (args: readonly string[]) => spawnSync('chroot', [SYNAPSE_ROOT, ...args], { encoding: 'utf8' });
    const keysMade = inChroot(['python3', '-m', 'synapse.app.homeserver', ...paths, '--generate-keys']);
    if (keysMade.status !== 0) throw new Error(`Synapse refused the configuration:\n${keysMade.stdout}${keysMade.stderr}`);
    const values: Record<string, string> = {};
    for (const key of keys) {
      const read = inChroot([
        'python3',
        '-m',
        'synapse.config',
        'read',
        key,
        '-c',
        `${CONFIG_CHECK_DIR}/homeserver.yaml`,
        '-c',
        `${CONFIG_CHECK_DIR}/conf.d/`,
      ]);
      if (read.status !== 0 || !/Config parses OK!/.test(read.stdout))
        throw new Error(`Synapse could not read ${key}:\n${read.stdout}${read.stderr}`);
      values[key] = read.stdout.split(`${key}: `)[1]?.trim() ?? '';
    }
    return values;
  } finally {
    rmSync(hostDir, { recursive: true, force: true });
    for (const path of mirrored) rmSync(path, { force: true });
  }
}
