import { execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { selfSignedCertificate } from './certificates.js';
import { SYNAPSE_ROOT } from './synapse.js';
import { tempDir } from './tempDir.js';

/**
 * A Debian machine for the executable README: a copy of the Synapse chroot (Debian's matrix-synapse package, its
 * user and files, and nginx-light), written to an overlay of its own, with Node.js and npm installed under /usr/local as
 * NodeSource's or nodejs.org's tarball puts them. Each `run` mounts the overlay in a private mount namespace with its
 * own process namespace, so that everything a run started ends with it.
 */
export interface DebianMachine {
  /** Where a path of the machine is written on this host (the overlay's upper layer: write before a run). */
  hostPath(this: void, path: string): string;
  /** Runs a bash script as root on the machine; `network: 'private'` gives it a loopback of its own (ports as written). */
  run(script: string, options: RunOptions): Promise<{ code: number; output: string }>;
  /** A new machine whose starting state is this one's now (a copy of its layer below the new one's). */
  fork(): DebianMachine;
}

export interface RunOptions {
  readonly network: 'host' | 'private';
  readonly timeoutMs: number;
  /** With a private network: a network device the run waits for (runJoined moves it in), and its address (CIDR). */
  readonly lan?: { readonly device: string; readonly address: string };
  /** A host directory mounted at /run/readme-transfer: what runs joined hand each other. */
  readonly transfer?: string;
  /** Called with the pid of the run's outermost process, which holds its namespaces. */
  readonly onSpawn?: (pid: number) => void;
}

/** Where a run finds the transfer directory of RunOptions. */
export const TRANSFER_DIR = '/run/readme-transfer';

const CHECKOUT = new URL('../..', import.meta.url).pathname;

function newMachine(lowers: readonly string[]): DebianMachine {
  const base = tempDir('regservice-machine-');
  const upper = join(base, 'upper');
  const work = join(base, 'work');
  const mount = join(base, 'mnt');
  for (const dir of [upper, work, mount]) mkdirSync(dir);
  // A directory made in the upper layer hides the lower one's owner and mode: each is made as the lower one is.
  const hostPath = (path: string): string => {
    let at = '/';
    for (const part of dirname(path)
      .split('/')
      .filter((name) => name !== '')) {
      at = join(at, part);
      const made = join(upper, at);
      if (existsSync(made)) continue;
      const lower = lowers.map((dir) => join(dir, at)).find((candidate) => existsSync(candidate));
      mkdirSync(made);
      if (lower !== undefined) {
        const { uid, gid, mode } = statSync(lower);
        chownSync(made, uid, gid);
        chmodSync(made, mode & 0o7777);
      }
    }
    // A file of a lower layer is copied up first (as the overlay does on a write), owner and mode kept.
    const made = join(upper, path);
    const lower = lowers.map((dir) => join(dir, path)).find((candidate) => existsSync(candidate));
    if (!existsSync(made) && lower !== undefined && statSync(lower).isFile()) execFileSync('cp', ['-a', lower, made]);
    return made;
  };
  return {
    hostPath,
    fork: () => {
      // A frozen copy of this machine's layer (owners and modes kept), so that what this one does later stays its own.
      const frozen = join(base, `frozen-${Date.now()}`);
      execFileSync('cp', ['-a', upper, frozen]);
      return newMachine([frozen, ...lowers]);
    },
    run: (script, options) => {
      const scriptPath = hostPath('/root/.readme-test.sh');
      writeFileSync(scriptPath, script);
      const npmCache = execFileSync('npm', ['config', 'get', 'cache'], { encoding: 'utf8' }).trim();
      const setup = [
        `mount -t overlay overlay -o lowerdir=${lowers.join(':')},upperdir=${upper},workdir=${work} ${mount}`,
        `mount -t proc proc ${mount}/proc`,
        `mount --rbind /dev ${mount}/dev`,
        `mount -t tmpfs tmpfs ${mount}/run`,
        // The operator's npm cache: what `npm ci` downloads once per machine.
        `mkdir -p ${npmCache} ${mount}/root/.npm && mount --bind ${npmCache} ${mount}/root/.npm`,
        ...(options.transfer === undefined
          ? []
          : [`mkdir -p ${mount}${TRANSFER_DIR} && mount --bind ${options.transfer} ${mount}${TRANSFER_DIR}`]),
        ...(options.network === 'private' ? ['ip link set lo up'] : []),
        ...(options.lan === undefined
          ? []
          : [
              // runJoined moves the device into this namespace once it exists.
              `for i in $(seq 300); do ip link show ${options.lan.device} >/dev/null 2>&1 && break; sleep 0.1; done`,
              `ip addr add ${options.lan.address} dev ${options.lan.device}`,
              `ip link set ${options.lan.device} up`,
            ]),
        `exec chroot ${mount} /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb ` +
          'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin NODE_EXTRA_CA_CERTS=/etc/ssl/readme-test/ca.pem ' +
          'bash /root/.readme-test.sh',
      ].join(' && ');
      const flags = [
        '--mount',
        '--propagation',
        'private',
        '--pid',
        '--fork',
        '--kill-child',
        ...(options.network === 'private' ? ['--net'] : []),
      ];
      return new Promise((resolve) => {
        const child = spawn('unshare', [...flags, 'sh', '-c', setup], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
        if (child.pid !== undefined) options.onSpawn?.(child.pid);
        let output = '';
        const collect = (chunk: Buffer): void => {
          output += chunk.toString();
        };
        child.stdout.on('data', collect);
        child.stderr.on('data', collect);
        const kill = (): void => {
          if (child.exitCode === null && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
        };
        const timer = setTimeout(() => {
          output += `\n::machine: killed after ${options.timeoutMs} ms\n`;
          kill();
        }, options.timeoutMs);
        process.once('exit', kill);
        child.once('close', (code, signal) => {
          clearTimeout(timer);
          process.off('exit', kill);
          resolve({ code: code ?? (signal === null ? 1 : 128), output });
        });
      });
    },
  };
}

/**
 * Runs machines at once, each in a network namespace of its own, joined by a network: the first two by a veth pair
 * with the addresses given (10.0.0.1/24 and 10.0.0.2/24, say), and a directory both see at TRANSFER_DIR.
 */
export async function runJoined(
  runs: readonly [JoinedRun, JoinedRun],
  timeoutMs: number,
): Promise<Array<{ code: number; output: string }>> {
  const transfer = tempDir('regservice-transfer-');
  const devices = runs.map((_, index) => `rgl${process.pid % 100_000}${'ab'[index]}`);
  const pids: number[] = [];
  const done = runs.map((joined, index) =>
    joined.machine.run(joined.script, {
      network: 'private',
      timeoutMs,
      transfer,
      lan: { device: devices[index] ?? '', address: joined.address },
      onSpawn: (pid) => pids.push(pid),
    }),
  );
  try {
    // unshare makes its namespaces before it runs anything: wait until both have theirs, then join them.
    const ownNet = readlinkSync('/proc/self/ns/net');
    const deadline = Date.now() + 10_000;
    const inOwnNet = (pid: number): boolean => {
      try {
        return readlinkSync(`/proc/${pid}/ns/net`) !== ownNet;
      } catch {
        return false;
      }
    };
    while (!(pids.length === 2 && pids.every(inOwnNet)) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    const [a, b] = pids;
    execFileSync('ip', [
      'link',
      'add',
      devices[0] ?? '',
      'netns',
      String(a),
      'type',
      'veth',
      'peer',
      'name',
      devices[1] ?? '',
      'netns',
      String(b),
    ]);
    return await Promise.all(done);
  } finally {
    await Promise.allSettled(done);
    rmSync(transfer, { recursive: true, force: true });
  }
}

export interface JoinedRun {
  readonly machine: DebianMachine;
  readonly script: string;
  /** Its address on the network (CIDR). */
  readonly address: string;
}

/** The tracked and untracked (not ignored) files of this checkout: what a clone of it holds, uncommitted changes included. */
function copyCheckout(to: string): void {
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: CHECKOUT, encoding: 'utf8' })
    .split('\0')
    .filter((file) => file !== '');
  for (const file of files) {
    const from = join(CHECKOUT, file);
    try {
      cpSync(from, join(to, file), { recursive: false, preserveTimestamps: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error; // deleted, not yet committed
    }
  }
}

export interface MachineSetup {
  /** The homeserver's server_name, as the package's debconf question sets it (conf.d/server_name.yaml). */
  readonly serverName: string;
}

/**
 * A new machine as an operator's is before the README: Debian's matrix-synapse installed (its server name answered,
 * a certificate for its TLS listener), nginx serving the homeserver's name over TLS (its own server block for /_matrix,
 * with a certificate the machine trusts), Node.js and npm under /usr/local, and this checkout in /root/checkout.
 */
export function debianMachine(setup: MachineSetup): DebianMachine {
  const machine = newMachine([SYNAPSE_ROOT]);
  const path = (at: string): string => machine.hostPath(at);
  writeFileSync(path('/etc/matrix-synapse/conf.d/server_name.yaml'), `server_name: ${setup.serverName}\n`);
  const synapseUid = Number(execFileSync('chroot', [SYNAPSE_ROOT, 'id', '-u', 'matrix-synapse'], { encoding: 'utf8' }).trim());
  // The package's TLS listener (8448) needs the certificate its homeserver.yaml names.
  const synapseTls = tempDir('regservice-synapse-tls-');
  selfSignedCertificate(setup.serverName, { cert: join(synapseTls, 'cert.pem'), key: join(synapseTls, 'key.pem') });
  for (const [from, to] of [
    ['cert.pem', 'homeserver.tls.crt'],
    ['key.pem', 'homeserver.tls.key'],
  ] as const) {
    cpSync(join(synapseTls, from), path(`/etc/matrix-synapse/${to}`));
    chownSync(path(`/etc/matrix-synapse/${to}`), synapseUid, 65534);
    chmodSync(path(`/etc/matrix-synapse/${to}`), 0o600);
  }
  // The public name's certificate, which every client on the machine trusts (NODE_EXTRA_CA_CERTS).
  selfSignedCertificate(setup.serverName, { cert: path('/etc/ssl/readme-test/cert.pem'), key: path('/etc/ssl/readme-test/key.pem') });
  cpSync(path('/etc/ssl/readme-test/cert.pem'), path('/etc/ssl/readme-test/ca.pem'));
  writeFileSync(path('/etc/hosts'), `127.0.0.1 localhost ${setup.serverName}\n::1 localhost ip6-localhost\n`);
  writeFileSync(
    path('/etc/nginx/sites-enabled/matrix'),
    `# The operator's own server block for the homeserver.\nserver {\n  listen 443 ssl;\n  server_name ${setup.serverName};\n` +
      '  ssl_certificate /etc/ssl/readme-test/cert.pem;\n  ssl_certificate_key /etc/ssl/readme-test/key.pem;\n' +
      '  location ~ ^(/_matrix|/_synapse/client) {\n    proxy_pass http://127.0.0.1:8008;\n    proxy_set_header X-Forwarded-For $remote_addr;\n' +
      '    proxy_set_header Host $host;\n  }\n}\n',
  );
  // Node.js and npm as nodejs.org's tarball installs them: prefix /usr/local.
  cpSync(process.execPath, path('/usr/local/bin/node'));
  // npm's own package, wherever the npm on PATH is (`npm root -g` follows the running node's prefix instead).
  const npmCli = execFileSync('sh', ['-c', 'readlink -f "$(command -v npm)"'], { encoding: 'utf8' }).trim();
  const npmPackage = dirname(dirname(npmCli));
  cpSync(npmPackage, path('/usr/local/lib/node_modules/npm'), { recursive: true });
  symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', path('/usr/local/bin/npm'));
  symlinkSync('../lib/node_modules/npm/bin/npx-cli.js', path('/usr/local/bin/npx'));
  // This host's way to the npm registry (its CA certificates and npm's global configuration), as an operator's own.
  cpSync('/etc/ssl/certs/ca-certificates.crt', path('/etc/ssl/certs/ca-certificates.crt'));
  // npm's global configuration as this host's npm reads it: beside the prefix it was installed in (`npm config get
  // globalconfig` follows the running node's prefix, which is not npm's when the tests run on another Node).
  const globalNpmrc = [
    join(dirname(dirname(dirname(npmPackage))), 'etc', 'npmrc'),
    execFileSync('npm', ['config', 'get', 'globalconfig'], { encoding: 'utf8' }).trim(),
  ].find((file) => existsSync(file));
  if (globalNpmrc !== undefined) cpSync(globalNpmrc, path('/usr/local/etc/npmrc'));
  copyCheckout(path('/root/checkout'));
  return machine;
}

/** The package's version, for the README's `<version>`. */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(CHECKOUT, 'package.json'), 'utf8')) as { version: string }).version;
}

export function removeMachineFiles(machine: DebianMachine): void {
  rmSync(dirname(machine.hostPath('/')), { recursive: true, force: true });
}
