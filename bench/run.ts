/**
 * npm run bench: side-by-side figures, written to BENCHMARKS.md. Never part of npm test.
 * Needs wrk (apt-get install wrk) for the HTTP figures, root with the Synapse chroot (test/synapse/provision.sh) for
 * the registration figures, and for the Go original a git copy of SmartMeshFoundation/matrix-regservice
 * (GO_ORIGINAL_GIT, default the search tool's fetch location) built by ../shared/go-original/build.sh.
 * What it cannot run it says so. Every comparison is made in this one run, on this machine.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
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
import { generateGate, type Gate } from '../test/support/gate.js';
import type { Scope } from '../test/support/scope.js';
import { freePort, waitFor } from '../test/support/ports.js';
import { PG_PASSWORD, startPostgres, type PostgresServer } from '../test/support/postgres.js';
import { sharedSecretRegister, startSynapse, synapseAvailability, SYNAPSE_ROOT } from '../test/support/synapse.js';
import { floodAddresses, registerAs, startFlood, type Attempt, type FloodTally } from '../test/support/registrationFlood.js';

const SERVER = 'photon.test';
const FORGED_COUNT = 5000;
const WRK_ARGS = ['-t1', '-c32', '-d10s'];
const ROUNDS = 3;
const CLOCK_TICKS_PER_S = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
const GO_ORIGINAL_GIT = process.env.GO_ORIGINAL_GIT ?? '/work/.mirror/SmartMeshFoundation+matrix-regservice/repo/.git';
const GO_BUILD = resolve('../shared/go-original/build.sh');

/** Every request here comes from one client (loopback): the request limits and account ceilings would measure themselves. */
const NO_CEILINGS = ['ipv4', 'ipv4-24', 'ipv6-64', 'ipv6-56', 'ipv6-48'].flatMap((ceiling) => [`--accounts-per-hour-${ceiling}`, '0']);
const NO_LIMITS = ['--rate-limit-client', '0', '--rate-limit-node', '0', ...NO_CEILINGS];
const lines: string[] = [];
const note = (text: string): void => {
  lines.push(text);
  process.stdout.write(`${text}\n`);
};
const fmt = (n: number): string => Math.round(n).toLocaleString('en');

function rate(count: number, ms: number): number {
  return Math.round((count / ms) * 1000);
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

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

/** utime+stime of a process and its children (the service's workers), in seconds. */
function treeCpuSeconds(pid: number): number {
  const children = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter(Boolean)
    .map(Number);
  let ticks = 0;
  for (const each of [pid, ...children]) {
    try {
      const fields = readFileSync(`/proc/${each}/stat`, 'utf8')
        .replace(/^.*\) /, '')
        .split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // exited meanwhile
    }
  }
  return ticks / CLOCK_TICKS_PER_S;
}

/** Peak RSS in MB of the process and of its largest child. */
function peakRss(pid: number): { main: number; worker: number | undefined } {
  const hwm = (each: number): number =>
    Math.round(Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${each}/status`, 'utf8'))?.[1] ?? NaN) / 1024);
  const children = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter(Boolean)
    .map(Number);
  return { main: hwm(pid), worker: children.length === 0 ? undefined : Math.max(...children.map(hwm)) };
}

function wrk(script: string, port: number, args: readonly string[], duration = WRK_ARGS): { requests: number; rps: number; p50: string } {
  const raw = execFileSync('wrk', ['--latency', ...duration, '-s', script, `http://127.0.0.1:${port}`, '--', ...args], {
    encoding: 'utf8',
  });
  const requests = Number(/(\d+) requests in/.exec(raw)?.[1] ?? NaN);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(raw)?.[1] ?? NaN);
  return { requests, rps: Math.round(rps), p50: /50%\s+(\S+)/.exec(raw)?.[1] ?? '?' };
}

interface Daemon {
  readonly pid: number;
  readonly port: number;
  stop(): Promise<void>;
}

interface LoadResult {
  readonly rps: number;
  readonly cpuUs: number;
  readonly p50: string;
  readonly rss: { main: number; worker: number | undefined };
}

async function loadRun(start: () => Promise<Daemon>, script: string, args: readonly string[]): Promise<LoadResult> {
  const daemon = await start();
  try {
    wrk(script, daemon.port, [...args, '0'], ['-t1', '-c32', '-d2s']); // warm-up
    const before = treeCpuSeconds(daemon.pid);
    const run = wrk(script, daemon.port, [...args, '1']);
    const cpu = treeCpuSeconds(daemon.pid) - before;
    return { rps: run.rps, cpuUs: (cpu / run.requests) * 1e6, p50: run.p50, rss: peakRss(daemon.pid) };
  } finally {
    await daemon.stop();
  }
}

function summarize(results: LoadResult[]): LoadResult & { spread: string } {
  const rps = results.map((r) => r.rps);
  return {
    rps: median(rps),
    cpuUs: median(results.map((r) => r.cpuUs)),
    p50: results[results.length >> 1]!.p50,
    rss: {
      main: Math.max(...results.map((r) => r.rss.main)),
      worker: results[0]!.rss.worker === undefined ? undefined : Math.max(...results.map((r) => r.rss.worker ?? 0)),
    },
    spread: `${fmt(Math.min(...rps))}–${fmt(Math.max(...rps))}`,
  };
}

function goOriginal(): string | undefined {
  if (!existsSync(GO_BUILD)) return undefined;
  if (!existsSync(GO_ORIGINAL_GIT)) return undefined;
  const built = spawnSync('bash', [GO_BUILD, GO_ORIGINAL_GIT], { encoding: 'utf8' });
  const binary = built.stdout.trim().split('\n').at(-1);
  return built.status === 0 && binary !== undefined && existsSync(binary) ? binary : undefined;
}

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
  cryptoFigures(forged);

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
  const synapse = synapseOk
    ? await startSynapse(scope, {
        serverName: SERVER,
        port: synapsePort,
        sharedSecretFile: secretFile,
        appserviceFiles: [gate.registrationFile],
      })
    : undefined;
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
  const go = (binary: string) => async (): Promise<Daemon> => {
    const goPort = await freePort();
    const dir = mkdtempSync(join(work, 'go-'));
    const child: ChildProcess = spawn(
      binary,
      [
        '--matrixdomain',
        SERVER,
        '--matrixurl',
        `${homeserverUrl}/_synapse/admin/v1/register`,
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
    const configs: [string, (limits: readonly string[]) => () => Promise<Daemon>][] = [
      ['this service, `--workers 1`', (limits) => service(['--workers', '1', ...limits])],
      [`this service, default workers (${cores})`, (limits) => service(limits)],
      // The measurement behind the workers' V8 flags (supervisor.ts): the setting the service does not use, beside it.
      [
        'this service, default workers, workers also `--optimize-for-size`',
        (limits) => service(limits, { NODE_OPTIONS: `--import ${resolve('bench/workersOptimizeForSize.mjs')}` }),
      ],
      ...(postgres === undefined
        ? []
        : [
            [`this service, default workers, PostgreSQL store`, (limits: readonly string[]) => service([...databaseArgs, ...limits])] as [
              string,
              (limits: readonly string[]) => () => Promise<Daemon>,
            ],
          ]),
      ...(goBinary === undefined
        ? []
        : [['Go original', () => go(goBinary)] as [string, (limits: readonly string[]) => () => Promise<Daemon>]]),
    ];
    note(
      `\n## 2. Forged-signature refusals (built daemons, wrk ${WRK_ARGS.join(' ')}, ${fmt(FORGED_COUNT)} distinct forged bodies, default verbosity)\n`,
    );
    if (goBinary === undefined)
      note(
        `The Go original is not here (build it with ../shared/go-original/build.sh from a git copy at ${GO_ORIGINAL_GIT}, or set GO_ORIGINAL_GIT): no Go rows.\n`,
      );
    if (spawnSync('wrk', ['--version']).error !== undefined) {
      note('wrk is not installed (apt-get install wrk): no HTTP figures.');
    } else {
      const table = async (
        title: string,
        script: string,
        serviceArgs: readonly string[],
        rounds: number,
      ): Promise<Map<string, LoadResult>> => {
        const all = new Map<string, LoadResult[]>(configs.map(([name]) => [name, []]));
        // Rounds interleave the configurations, so that a noisy moment does not land on one of them only.
        for (let round = 0; round < rounds; round++) {
          for (const [name, start] of configs) all.get(name)!.push(await loadRun(start(serviceArgs), script, [forgedFile]));
        }
        note(
          `### ${title}\n\nMedian of ${rounds} rounds, interleaved. CPU is the daemon's whole process tree (utime+stime from /proc) over the measured run ÷ requests.\n`,
        );
        note(
          '| daemon | refusals/s (median) | range | CPU µs / refusal | p50 latency | peak RSS: primary / largest worker |\n|---|---|---|---|---|---|',
        );
        const medians = new Map<string, LoadResult>();
        for (const [name, results] of all) {
          const s = summarize(results);
          medians.set(name, s);
          note(
            `| ${name} | ${fmt(s.rps)} | ${s.spread} | ${s.cpuUs.toFixed(0)} | ${s.p50} | ${s.rss.main} MB${s.rss.worker === undefined ? '' : ` / ${s.rss.worker} MB`} |`,
          );
        }
        return medians;
      };
      const open = await table(
        'Rate limits off (`--rate-limit-client 0 --rate-limit-node 0`; the Go original has none)',
        'bench/forged.lua',
        ['--rate-limit-client', '0', '--rate-limit-node', '0'],
        ROUNDS,
      );
      const botnet = await table(
        'Default rate limits on, every request from another client address (X-Forwarded-For from loopback: a botnet behind nginx)',
        'bench/botnet.lua',
        [],
        2,
      );

      const goOpen = open.get('Go original');
      const ours = open.get(`this service, default workers (${cores})`)!;
      const one = open.get('this service, `--workers 1`')!;
      note('\n### Against the targets\n');
      if (goOpen !== undefined) {
        const rpsRatio = ours.rps / goOpen.rps;
        const cpuRatio = ours.cpuUs / goOpen.cpuUs;
        note(
          `- Refusals/s, default workers ÷ Go original: **${rpsRatio.toFixed(2)}×** (target ≥ 1.5×: ${rpsRatio >= 1.5 ? 'met' : 'not met'}).`,
        );
        note(
          `- CPU per refusal, default workers ÷ Go original: **${cpuRatio.toFixed(2)}×** (target ≤ 0.7×: ${cpuRatio <= 0.7 ? 'met' : 'not met'}).`,
        );
      }
      const worstRss = Math.max(...[...open.values(), ...botnet.values()].flatMap((r) => [r.rss.main, r.rss.worker ?? 0]));
      note(
        `- Peak RSS per process, over every run above: ${worstRss} MB (target ≤ 100 MB: ${worstRss <= 100 ? 'met' : 'not met'}). ` +
          'RSS counts the pages of the Node binary each process maps (about 40 MB, shared between the processes); the primary keeps ' +
          'the rate-limit allowances (at most 100,000 clients per limit) and the database.',
      );
      note(
        `- Scaling: ${fmt(one.rps)}/s with one worker, ${fmt(ours.rps)}/s with ${cores} (${(ours.rps / one.rps).toFixed(2)}×) on ${cores} cores that wrk shares. ` +
          `One refusal costs ${ours.cpuUs.toFixed(0)} µs of CPU here, so a 16-core machine with the load generated elsewhere would refuse about ` +
          `16 ÷ ${ours.cpuUs.toFixed(0)} µs ≈ **${fmt(16 / (ours.cpuUs / 1e6))}/s**${goOpen === undefined ? '' : ` (the Go original, at ${goOpen.cpuUs.toFixed(0)} µs: ≈ ${fmt(16 / (goOpen.cpuUs / 1e6))}/s)`}.`,
      );
    }

    note('\n## 3. Valid registrations against a real Synapse\n');
    if (synapse === undefined) {
      note(`No Synapse here (root and ${SYNAPSE_ROOT} needed): no registration figures.`);
    } else {
      await registrationFigures(
        gate,
        synapse,
        service(NO_LIMITS),
        postgres === undefined ? undefined : service([...NO_LIMITS, ...databaseArgs]),
        goBinary === undefined ? undefined : go(goBinary),
      );
      note('\n## 4. Legitimate nodes during a flood of valid registrations\n');
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
  writeFileSync('BENCHMARKS.md', `${lines.join('\n')}\n`);
  process.stdout.write('\nwritten to BENCHMARKS.md\n');
}

async function registrationFigures(
  gate: Gate,
  synapse: Parameters<typeof sharedSecretRegister>[0],
  start: () => Promise<Daemon>,
  startPg: (() => Promise<Daemon>) | undefined,
  startGo: (() => Promise<Daemon>) | undefined,
): Promise<void> {
  const version = execFileSync('chroot', [SYNAPSE_ROOT, 'python3', '-c', 'import synapse; print(synapse.__version__)'], {
    encoding: 'utf8',
  }).trim();
  const daemon = await start();
  const count = 400;
  const concurrency = 16;
  const measure = async (one: (index: number) => Promise<void>, total: number): Promise<{ rps: number; p50: number }> => {
    const latencies: number[] = [];
    let next = 0;
    const startedAt = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < total) {
          const index = next++;
          const t = performance.now();
          await one(index);
          latencies.push(performance.now() - t);
        }
      }),
    );
    return { rps: rate(total, performance.now() - startedAt), p50: percentile(latencies, 50) };
  };
  const viaService = Array.from({ length: count }, () => signRegistration(randomPrivateKey(), SERVER));
  const direct = Array.from({ length: count }, () => signRegistration(randomPrivateKey(), SERVER));
  const viaGo = Array.from({ length: count }, () => signRegistration(randomPrivateKey(), SERVER));
  const viaPg = Array.from({ length: count }, () => signRegistration(randomPrivateKey(), SERVER));
  const postRun =
    (url: string, bodies: readonly unknown[], what: string) =>
    async (index: number): Promise<void> => {
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(bodies[index]),
      });
      if (!response.ok) throw new Error(`registration through ${what}: HTTP ${response.status}`);
      await response.arrayBuffer();
    };
  const directRun = async (index: number): Promise<void> => {
    const body = direct[index]!;
    const answer = await sharedSecretRegister(synapse, {
      username: body.localpart,
      password: body.password,
      displayname: body.displayname,
    });
    if (answer.status !== 200) throw new Error(`direct registration: HTTP ${answer.status}`);
  };
  const serviceRun = postRun(`${gate.url}/register`, viaService, 'the service');
  // Alternate halves: Synapse slows as its database grows, which would favour whichever ran first.
  const half = count / 2;
  const combine = (a: { rps: number; p50: number }, b: { rps: number; p50: number }) => ({
    rps: Math.round((a.rps + b.rps) / 2),
    p50: (a.p50 + b.p50) / 2,
  });
  // The service is stopped while the Go original runs, and the other way round: neither takes CPU from the other.
  const d1 = await measure((index) => directRun(index), half);
  const cpuBefore = treeCpuSeconds(daemon.pid);
  const s1 = await measure((index) => serviceRun(index), half);
  let serviceCpu = treeCpuSeconds(daemon.pid) - cpuBefore;
  let rss = peakRss(daemon.pid);
  await daemon.stop();
  let pgResult: { rps: number; p50: number; cpuMs: number } | undefined;
  if (startPg !== undefined) {
    const pgDaemon = await startPg();
    const pgRun = postRun(`${gate.url}/register`, viaPg, 'the service on PostgreSQL');
    const pgCpu = treeCpuSeconds(pgDaemon.pid);
    const both = combine(await measure((index) => pgRun(index), half), await measure((index) => pgRun(index + half), half));
    pgResult = { ...both, cpuMs: ((treeCpuSeconds(pgDaemon.pid) - pgCpu) / count) * 1000 };
    await pgDaemon.stop();
  }
  let goResult: { rps: number; p50: number } | undefined;
  if (startGo !== undefined) {
    const goDaemon = await startGo();
    const goRun = postRun(`http://127.0.0.1:${goDaemon.port}/regapp/1/register`, viaGo, 'the Go original');
    goResult = combine(await measure((index) => goRun(index), half), await measure((index) => goRun(index + half), half));
    await goDaemon.stop();
  }
  const again = await start();
  const cpuAgain = treeCpuSeconds(again.pid);
  const s2 = await measure((index) => serviceRun(index + half), half);
  serviceCpu += treeCpuSeconds(again.pid) - cpuAgain;
  const rss2 = peakRss(again.pid);
  rss = { main: Math.max(rss.main, rss2.main), worker: Math.max(rss.worker ?? 0, rss2.worker ?? 0) };
  await again.stop();
  const d2 = await measure((index) => directRun(index + half), half);
  const directResult = combine(d1, d2);
  const serviceResult = combine(s1, s2);
  const ratio = serviceResult.rps / directResult.rps;
  note(
    `Synapse ${version}, ${count} registrations each, ${concurrency} at a time, in halves placed symmetrically (direct, service, ${pgResult === undefined ? '' : 'service on PostgreSQL ×2, '}${goResult === undefined ? '' : 'Go original ×2, '}service, direct); the service with its default workers, rate limits off (every request comes from one client here).\n`,
  );
  note('| path | registrations/s | p50 latency | ÷ direct |\n|---|---|---|---|');
  note(`| direct shared-secret registration | ${directResult.rps} | ${directResult.p50.toFixed(1)} ms | 1.00 |`);
  note(`| through matrix-regservice | ${serviceResult.rps} | ${serviceResult.p50.toFixed(1)} ms | ${ratio.toFixed(2)} |`);
  if (pgResult !== undefined)
    note(
      `| through matrix-regservice, PostgreSQL store | ${pgResult.rps} | ${pgResult.p50.toFixed(1)} ms | ${(pgResult.rps / directResult.rps).toFixed(2)} |`,
    );
  if (goResult !== undefined)
    note(`| through the Go original | ${goResult.rps} | ${goResult.p50.toFixed(1)} ms | ${(goResult.rps / directResult.rps).toFixed(2)} |`);
  note(
    `\nRatio ${ratio.toFixed(2)} (target ≥ 0.97: ${ratio >= 0.97 ? 'met' : 'not met'}); p50 added by the service ${(serviceResult.p50 - directResult.p50).toFixed(1)} ms. ` +
      `Peak RSS during the registrations: primary ${rss.main} MB, largest worker ${rss.worker ?? '?'} MB. ` +
      `The service spent ${((serviceCpu / viaService.length) * 1000).toFixed(2)} ms of CPU per registration (its whole process tree); ` +
      'Synapse, the service and the load generator share the same 2 cores here, so that CPU is taken from Synapse, which the ratio shows.',
  );
  if (pgResult !== undefined) {
    const pgRatio = pgResult.rps / serviceResult.rps;
    note(
      `\nPostgreSQL store ÷ LevelDB store: **${pgRatio.toFixed(2)}×** registrations/s (target ≥ 0.95: ${pgRatio >= 0.95 ? 'met' : 'not met'}); ` +
        `the service's CPU per registration on PostgreSQL: ${pgResult.cpuMs.toFixed(2)} ms (PostgreSQL's own CPU, on the same cores, is not counted there).`,
    );
  }
}

/**
 * Nodes from networks of their own registering while two floods (an IPv6 /56 and an IPv4 /24, each past what the
 * homeserver slots and the default queue hold) keep Synapse at its full pace; beside the same nodes with no flood.
 */
async function floodFigures(gate: Gate, start: () => Promise<Daemon>): Promise<void> {
  const SAMPLES = 150;
  const FLOOD_LOOPS = 160;
  const legitimate = (from: number, count: number) =>
    Array.from({ length: count }, (_, index) => ({
      body: signRegistration(randomPrivateKey(), SERVER),
      client: (from + index) % 2 === 0 ? `198.18.${(from + index) % 256}.7` : `2001:db8:${(0x1000 + from + index).toString(16)}::7`,
    }));
  const spaced = async (nodes: ReturnType<typeof legitimate>, gapMs: number): Promise<Attempt[]> =>
    Promise.all(
      nodes.map(async ({ body, client }, index) => {
        await new Promise((resolve) => setTimeout(resolve, index * gapMs));
        return registerAs(gate.url, body, client);
      }),
    );
  const daemon = await start();
  let quiet: Attempt[];
  let during: Attempt[];
  let floods: FloodTally[];
  let floodSeconds: number;
  try {
    quiet = await spaced(legitimate(0, 30), 100);
    const started = [
      startFlood({ gateUrl: gate.url, serverName: SERVER, concurrency: FLOOD_LOOPS, address: floodAddresses.ipv6Site('2001:db8:0:56') }),
      startFlood({ gateUrl: gate.url, serverName: SERVER, concurrency: FLOOD_LOOPS, address: floodAddresses.ipv4Network('203.0.113') }),
    ];
    const floodStart = performance.now();
    try {
      await waitFor(
        'the floods to fill the queue',
        async () => (started.every((flood) => (flood.tally().statuses.get(503) ?? 0) > 0) ? true : undefined),
        60_000,
      );
      during = await spaced(legitimate(30, SAMPLES), 80);
    } finally {
      floods = await Promise.all(started.map((flood) => flood.stop()));
      floodSeconds = (performance.now() - floodStart) / 1000;
    }
  } finally {
    await daemon.stop();
  }
  const row = (what: string, attempts: Attempt[]): string => {
    const ms = attempts.map((attempt) => attempt.ms);
    const first = attempts.filter((attempt) => attempt.status === 200).length;
    return `| ${what} | ${attempts.length} | ${percentile(ms, 50).toFixed(0)} ms | ${percentile(ms, 95).toFixed(0)} ms | ${Math.max(...ms).toFixed(0)} ms | ${first} of ${attempts.length} |`;
  };
  const accounts = floods.reduce((sum, tally) => sum + (tally.statuses.get(200) ?? 0), 0);
  const busy = floods.reduce((sum, tally) => sum + (tally.statuses.get(503) ?? 0), 0);
  note(
    `Two floods of fresh keys, correctly signed, through the trusted proxy (loopback): one from an IPv6 /56 (its 256 /64s in turn), one from an IPv4 /24, ` +
      `${FLOOD_LOOPS} connections each (together past the ${32} homeserver slots and the ${256} queued a gate holds by default), account ceilings off so that the queue's fairness is what is measured. ` +
      `Each legitimate node comes from a network of its own, makes one request, and is timed from request to answer; they arrive one every 80 ms during the flood, one every 100 ms without it.\n`,
  );
  note('| legitimate nodes | samples | p50 | p95 | max | 200 at the first try |\n|---|---|---|---|---|---|');
  note(row('no flood', quiet));
  note(row('during the floods', during));
  const p95 = percentile(
    during.map((attempt) => attempt.ms),
    95,
  );
  note(
    `\nThe floods made ${fmt(accounts)} accounts in ${floodSeconds.toFixed(0)} s (${fmt(accounts / floodSeconds)}/s: Synapse's pace with everything on these 2 cores) and got ${fmt(busy)} refusals (503 \`busy\`). ` +
      `p95 during the floods: **${(p95 / 1000).toFixed(2)} s** (target ≤ 2 s: ${p95 <= 2000 ? 'met' : 'not met'}).`,
  );
}

await main();
