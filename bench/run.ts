/**
 * npm run bench: side-by-side figures, written to BENCHMARKS.md. Never part of npm test.
 * Needs wrk (apt-get install wrk) for the HTTP figures, root with the Synapse chroot (test/synapse/provision.sh) for
 * the registration figures, and for the Go original a git copy of SmartMeshFoundation/matrix-regservice
 * (GO_ORIGINAL_GIT, default the search tool's fetch location) built by ../shared/go-original/build.sh.
 * What it cannot run it says so. Every comparison is made in this one run, on this machine.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { keccak256Utf8 } from '../src/protocol/keccak.js';
import { nativeRecovery, nobleRecovery } from '../src/protocol/addressRecovery.js';
import { parseSignatureHex } from '../src/protocol/signature.js';
import { randomPrivateKey, signHashHex, signRegistration } from '../src/protocol/signRegistration.js';
import { secp256k1 as nobleCurves } from '@noble/curves/secp256k1.js';
import { generateGate } from '../test/support/gate.js';
import type { Scope } from '../test/support/scope.js';
import { freePort, waitFor } from '../test/support/ports.js';
import { PG_PASSWORD, startPostgres, type PostgresServer } from '../test/support/postgres.js';
import { startSynapse, synapseAvailability, SYNAPSE_ROOT, type RunningSynapse } from '../test/support/synapse.js';
import { openPgStore } from '../src/store/postgres/pgStore.js';
import { defaultWorkers } from '../src/config/settings.js';
import { fmt, lines, note, NO_CEILINGS, NO_LIMITS, rate, SERVER, type Daemon } from './measure.js';
import { synapseFigures } from './synapseFigures.js';
import {
  millionFigures,
  millionNodeDatapath,
  millionRun,
  MILLION,
  seedStore,
  startNoopHomeserver,
  validFigures,
  type MillionRun,
  type ValidConfig,
} from './noopFigures.js';
import { floodFigures } from './floodFigures.js';
import { refusalFigures, WRK_ARGS, type RefusalConfig } from './refusalFigures.js';

const FORGED_COUNT = 5000;
const GO_ORIGINAL_GIT = process.env.GO_ORIGINAL_GIT ?? '/work/.mirror/SmartMeshFoundation+matrix-regservice/repo/.git';
const GO_BUILD = resolve('../shared/go-original/build.sh');

// 1. Recoveries per second, one core, over the forged requests' password signatures.
function cryptoFigures(forged: { password: string }[]): void {
  const hash = keccak256Utf8(SERVER);
  const signatures = forged.map((body) => parseSignatureHex(body.password, 'password'));
  const require = createRequire(import.meta.url);
  const elliptic = require('secp256k1/elliptic') as {
    ecdsaRecover(sig: Uint8Array, recid: number, msg: Uint8Array, compressed: boolean): Uint8Array;
  };
  const ethers = require('ethers') as { SigningKey: { recoverPublicKey(digest: Uint8Array, signature: string): string } };
  const native = nativeRecovery();
  const noble = nobleRecovery();
  const candidates: [string, (index: number) => void][] = [
    ...(native === null
      ? []
      : [
          [
            'libsecp256k1 (npm secp256k1 prebuilt addon) — used',
            (i: number) => native.recover(hash, signatures[i % signatures.length]!),
          ] as [string, (index: number) => void],
        ]),
    ['@noble/secp256k1 — the fallback', (i) => noble.recover(hash, signatures[i % signatures.length]!)],
    [
      '@noble/curves (not used; for comparison)',
      (i) => {
        const s = signatures[i % signatures.length]!;
        const recovered = new Uint8Array(65);
        recovered[0] = s.recoveryId;
        recovered.set(s.compact, 1);
        try {
          nobleCurves.recoverPublicKey(recovered, hash, { prehash: false });
        } catch {
          /* forged: may not recover */
        }
      },
    ],
    [
      'elliptic (npm secp256k1 JS fallback)',
      (i) => {
        const s = signatures[i % signatures.length]!;
        try {
          elliptic.ecdsaRecover(s.compact, s.recoveryId, hash, false);
        } catch {
          /* forged: may not recover */
        }
      },
    ],
    [
      'ethers 6',
      (i) => {
        const body = forged[i % forged.length]!;
        try {
          ethers.SigningKey.recoverPublicKey(hash, `0x${body.password}`);
        } catch {
          /* forged */
        }
      },
    ],
  ];
  const perSecond = (run: (index: number) => void): number => {
    let count = 0;
    const started = performance.now();
    while (performance.now() - started < 2000) run(count++);
    return rate(count, performance.now() - started);
  };
  note(
    '\n## 1. Signatures, one core\n\nRecovery is what the service does per request; signing is what a node does (the `register` command and library).\n',
  );
  note('| implementation | recoveries/s |\n|---|---|');
  for (const [name, run] of candidates) note(`| ${name} | ${fmt(perSecond(run))} |`);
  const key = randomPrivateKey();
  note('\n| implementation | signatures/s (low s, recoverable) |\n|---|---|');
  note(`| @noble/secp256k1 — used by the node side | ${fmt(perSecond((i) => signHashHex(key, keccak256Utf8(`m${i}`))))} |`);
  note(
    `| @noble/curves (not used; for comparison) | ${fmt(perSecond((i) => nobleCurves.sign(keccak256Utf8(`m${i}`), key, { prehash: false, lowS: true, format: 'recovered' })))} |`,
  );
}

function goOriginal(): string | undefined {
  if (!existsSync(GO_BUILD)) return undefined;
  if (!existsSync(GO_ORIGINAL_GIT)) return undefined;
  const built = spawnSync('bash', [GO_BUILD, GO_ORIGINAL_GIT], { encoding: 'utf8' });
  const binary = built.stdout.trim().split('\n').at(-1);
  return built.status === 0 && binary !== undefined && existsSync(binary) ? binary : undefined;
}

/** The sections to run: all of them (and BENCHMARKS.md written), or those named on the command line (printed only). */
const SECTIONS = ['signatures', 'refusals', 'synapse', 'noop', 'million', 'floods'] as const;
const named = process.argv.slice(2);
for (const name of named)
  if (!(SECTIONS as readonly string[]).includes(name)) throw new Error(`no section ${name}: ${SECTIONS.join(', ')}`);
const runs = (section: (typeof SECTIONS)[number]): boolean => named.length === 0 || named.includes(section);

async function main(): Promise<void> {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  note(
    `# Benchmarks\n\nRun: ${new Date().toISOString()} · ${cpus().length} × ${cpu} · Node ${process.version}` +
      ` · \`npm run bench\` (bench/run.ts). Load generator (wrk) on the same machine, sharing its cores.`,
  );
  const forged = Array.from({ length: FORGED_COUNT }, () => ({
    ...signRegistration(randomPrivateKey(), SERVER),
    password: signRegistration(randomPrivateKey(), SERVER).password,
  }));
  if (runs('signatures')) cryptoFigures(forged);

  const work = mkdtempSync(join(tmpdir(), 'regservice-bench-'));
  const forgedFile = join(work, 'forged.txt');
  writeFileSync(forgedFile, forged.map((body) => JSON.stringify(body)).join('\n') + '\n');
  const secretFile = join(work, 'secret');
  writeFileSync(secretFile, randomBytes(24).toString('hex'), { mode: 0o600 });
  const synapseOk = synapseAvailability().available && process.env.SYNAPSE_URL === undefined;
  const synapsePort = await freePort();
  const homeserverUrl = `http://127.0.0.1:${synapsePort}`;
  // What the run starts is ended in its finally, or when the process exits.
  const enders: (() => unknown)[] = [];
  const scope: Scope = { after: (end) => void enders.push(end) };
  const gate = await generateGate(scope, { serverName: SERVER, homeserverUrl, genconfigArgs: ['--sharesecret-file', secretFile] });
  const synapseConfig = { serverName: SERVER, port: synapsePort, sharedSecretFile: secretFile, appserviceFiles: [gate.registrationFile] };
  let synapse = synapseOk ? await startSynapse(scope, synapseConfig) : undefined;
  /** Synapse again on the same port, on an empty database of its own. */
  const freshSynapse = async (): Promise<RunningSynapse> => {
    await synapse?.stop();
    synapse = await startSynapse(scope, synapseConfig);
    return synapse;
  };
  const goBinary = goOriginal();
  const port = Number(new URL(gate.url).port);
  // The PostgreSQL store beside LevelDB: a real server from Debian's package, as the tests start it.
  let postgres: PostgresServer | undefined;
  let databaseArgs: string[] = [];
  try {
    postgres = await startPostgres();
    const passwordFile = join(work, 'db-password');
    writeFileSync(passwordFile, PG_PASSWORD, { mode: 0o600 });
    databaseArgs = ['--database', await postgres.createDatabase(), '--database-password-file', passwordFile];
  } catch (error) {
    note(`\nNo PostgreSQL server here (${(error as Error).message}): no PostgreSQL rows.`);
  }

  const service =
    (args: readonly string[], env: NodeJS.ProcessEnv = {}) =>
    async (): Promise<Daemon> => {
      const since = gate.mark();
      const daemon = await gate.start(['--verbosity', '3', ...args], env);
      await gate.waitForLog(/matrix-regservice listening/, 20_000, since);
      return { pid: daemon.child.pid as number, port, stop: async () => void (await gate.stop()) };
    };
  const go =
    (binary: string, matrixUrl = homeserverUrl) =>
    async (): Promise<Daemon> => {
      const goPort = await freePort();
      const dir = mkdtempSync(join(work, 'go-'));
      const child: ChildProcess = spawn(
        binary,
        [
          '--matrixdomain',
          SERVER,
          '--matrixurl',
          `${matrixUrl}/_synapse/admin/v1/register`,
          '--sharesecret',
          readFileSync(secretFile, 'utf8'),
          '--host',
          '127.0.0.1',
          '--port',
          String(goPort),
          '--datapath',
          join(dir, '.matrix'),
        ],
        { cwd: dir, stdio: 'ignore' },
      );
      await waitFor(
        'the Go original',
        async () =>
          (await fetch(`http://127.0.0.1:${goPort}/regapp/1/register`, { method: 'POST', body: '{}' })).status > 0 ? true : undefined,
        10_000,
      );
      return {
        pid: child.pid as number,
        port: goPort,
        stop: async () => {
          child.kill('SIGKILL');
          await new Promise((resolve) => child.once('exit', resolve));
        },
      };
    };

  try {
    const cores = availableParallelism();
    // Each configuration, given the service's rate-limit flags of a table (the Go original has no limits).
    // The default before the primary served requests too: a worker per core (as many processes serving, and one more).
    const WORKER_PER_CORE = `this service, a worker per core beside the primary (\`--workers ${cores}\`)`;
    const DEFAULT_WORKERS = `this service, default workers (${defaultWorkers(cores)} beside the primary)`;
    const ONE_PROCESS = 'this service, one process (`--workers 0`)';
    const GO_ORIGINAL = 'Go original';
    const configs: RefusalConfig[] = [
      [DEFAULT_WORKERS, (limits) => service(limits)],
      [WORKER_PER_CORE, (limits) => service(['--workers', String(cores), ...limits])],
      [ONE_PROCESS, (limits) => service(['--workers', '0', ...limits])],
      // The measurement behind the workers' V8 flags (supervisor.ts): the setting the service does not use, beside it.
      [
        'this service, default workers, workers also `--optimize-for-size`',
        (limits) => service(limits, { NODE_OPTIONS: `--import ${resolve('bench/workersOptimizeForSize.mjs')}` }),
      ],
      ...(postgres === undefined
        ? []
        : [
            [
              `this service, default workers, PostgreSQL store`,
              (limits: readonly string[]) => service([...databaseArgs, ...limits]),
            ] as RefusalConfig,
          ]),
      ...(goBinary === undefined ? [] : [[GO_ORIGINAL, () => go(goBinary)] as RefusalConfig]),
    ];
    if (runs('refusals'))
      note(
        `\n## 2. Forged-signature refusals (built daemons, wrk ${WRK_ARGS.join(' ')}, ${fmt(FORGED_COUNT)} distinct forged bodies, default verbosity)\n`,
      );
    if (goBinary === undefined && (runs('refusals') || runs('synapse')))
      note(
        `The Go original is not here (build it with ../shared/go-original/build.sh from a git copy at ${GO_ORIGINAL_GIT}, or set GO_ORIGINAL_GIT): no Go rows.\n`,
      );
    if (!runs('refusals')) {
      // not asked for
    } else if (spawnSync('wrk', ['--version']).error !== undefined) {
      note('wrk is not installed (apt-get install wrk): no HTTP figures.');
    } else {
      await refusalFigures(configs, forgedFile, cores, {
        defaultWorkers: DEFAULT_WORKERS,
        oneProcess: ONE_PROCESS,
        goOriginal: GO_ORIGINAL,
      });
    }

    const registerUrl = `${gate.url}/register`;
    if (runs('synapse')) {
      note('\n## 3. Valid registrations against a real Synapse\n');
      if (synapse === undefined) note(`No Synapse here (root and ${SYNAPSE_ROOT} needed): no registration figures.`);
      else
        await synapseFigures({
          freshSynapse,
          registerUrl,
          service: service(NO_LIMITS),
          servicePg: postgres === undefined ? undefined : service([...NO_LIMITS, ...databaseArgs]),
          goOriginal:
            goBinary === undefined
              ? undefined
              : async () => {
                  const daemon = await go(goBinary)();
                  return { daemon, registerUrl: `http://127.0.0.1:${daemon.port}/regapp/1/register` };
                },
        });
    }
    if (runs('noop') || runs('million')) {
      const noop = await startNoopHomeserver();
      enders.push(() => noop.stop());
      if (runs('noop')) {
        note("\n## 4. Valid registrations against a no-op homeserver: the service's own cost, beside the Go original\n");
        const POSTGRES = `${DEFAULT_WORKERS}, PostgreSQL store`;
        const validConfigs: ValidConfig[] = [
          [DEFAULT_WORKERS, (url) => service([...NO_LIMITS, '--matrixurl', url])],
          [WORKER_PER_CORE, (url) => service([...NO_LIMITS, '--matrixurl', url, '--workers', String(cores)])],
          [ONE_PROCESS, (url) => service([...NO_LIMITS, '--matrixurl', url, '--workers', '0'])],
          ...(postgres === undefined
            ? []
            : [
                [POSTGRES, (url: string) => service([...NO_LIMITS, '--matrixurl', url, ...databaseArgs])] as ValidConfig,
                [
                  `${ONE_PROCESS}, PostgreSQL store`,
                  (url: string) => service([...NO_LIMITS, '--matrixurl', url, '--workers', '0', ...databaseArgs]),
                ] as ValidConfig,
              ]),
          ...(goBinary === undefined ? [] : [[GO_ORIGINAL, (url: string) => go(goBinary, url)] as ValidConfig]),
        ];
        await validFigures(noop, new URL(registerUrl).pathname, validConfigs, {
          defaultWorkers: DEFAULT_WORKERS,
          oneProcess: ONE_PROCESS,
          ...(postgres === undefined ? {} : { postgres: POSTGRES }),
          ...(goBinary === undefined ? {} : { goOriginal: GO_ORIGINAL }),
        });
      }
      if (runs('million')) {
        note(`\n## 5. ${fmt(MILLION)} recorded nodes\n`);
        const million = new Map<string, MillionRun>();
        const datapath = join(work, 'million');
        const levelSeeded = await millionNodeDatapath(datapath);
        million.set(
          'LevelDB',
          await millionRun(
            levelSeeded,
            service([...NO_LIMITS, '--matrixurl', noop.url, '--datapath', datapath]),
            registerUrl,
            'LevelDB, a million nodes',
          ),
        );
        rmSync(datapath, { recursive: true, force: true });
        if (postgres !== undefined) {
          const url = await postgres.createDatabase();
          const store = await openPgStore({ url, password: PG_PASSWORD, poolSize: 8, leaseMs: 60_000, migrate: true });
          const pgSeeded = await seedStore(store, MILLION, 64);
          await store.close();
          const pgArgs = ['--database', url, ...databaseArgs.slice(2)];
          million.set(
            'PostgreSQL',
            await millionRun(
              pgSeeded,
              service([...NO_LIMITS, '--matrixurl', noop.url, ...pgArgs]),
              registerUrl,
              'PostgreSQL, a million nodes',
            ),
          );
        }
        millionFigures(million);
      }
    }
    if (runs('floods') && synapse !== undefined) {
      note('\n## 6. Legitimate nodes during a flood of valid registrations\n');
      await floodFigures(gate, service(NO_CEILINGS));
    }
  } finally {
    await gate.stop();
    await synapse?.stop();
    await postgres?.stop();
    for (const end of enders.reverse()) await end();
    rmSync(work, { recursive: true, force: true });
    rmSync(gate.dir, { recursive: true, force: true });
  }
  if (named.length > 0) return;
  writeFileSync('BENCHMARKS.md', `${lines.join('\n')}\n`);
  process.stdout.write('\nwritten to BENCHMARKS.md\n');
}

await main();
