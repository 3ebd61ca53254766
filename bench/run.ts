/**
 * npm run bench: the figures issue #5 asks for, written to BENCHMARKS.md. Never part of npm test.
 * Needs wrk (apt-get install wrk) for the HTTP figures and root with the Synapse chroot
 * (test/synapse/provision.sh) for the registration figures; what it cannot run it says so.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpus } from 'node:os';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keccak256Utf8 } from '../src/protocol/keccak.js';
import { nativeRecovery, nobleRecovery } from '../src/protocol/addressRecovery.js';
import { parseSignatureHex } from '../src/protocol/signature.js';
import { randomPrivateKey, signRegistration } from '../src/protocol/signRegistration.js';
import { generateGate } from '../test/support/gate.js';
import { freePort } from '../test/support/ports.js';
import { sharedSecretRegister, startSynapse, synapseAvailability, SYNAPSE_ROOT } from '../test/support/synapse.js';

const SERVER = 'photon.test';
const FORGED_COUNT = 5000;
const lines: string[] = [];
const note = (text: string): void => {
  lines.push(text);
  process.stdout.write(`${text}\n`);
};

function rate(count: number, ms: number): number {
  return Math.round((count / ms) * 1000);
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

// 1. Recoveries per second, one core, over the forged requests' password signatures.
function cryptoFigures(forged: { password: string }[]): void {
  const hash = keccak256Utf8(SERVER);
  const signatures = forged.map((body) => parseSignatureHex(body.password, 'password'));
  const require = createRequire(import.meta.url);
  const elliptic = require('secp256k1/elliptic') as { ecdsaRecover(sig: Uint8Array, recid: number, msg: Uint8Array, compressed: boolean): Uint8Array };
  const ethers = require('ethers') as { SigningKey: { recoverPublicKey(digest: Uint8Array, signature: string): string } };
  const native = nativeRecovery();
  const noble = nobleRecovery();
  const candidates: [string, (index: number) => void][] = [
    ...(native === null ? [] : [['libsecp256k1 (npm secp256k1 prebuilt addon) — used', (i: number) => native.recover(hash, signatures[i % signatures.length]!)] as [string, (index: number) => void]]),
    ['@noble/curves — the fallback', (i) => noble.recover(hash, signatures[i % signatures.length]!)],
    ['elliptic (npm secp256k1 JS fallback)', (i) => {
      const s = signatures[i % signatures.length]!;
      try { elliptic.ecdsaRecover(s.compact, s.recoveryId, hash, false); } catch { /* forged: may not recover */ }
    }],
    ['ethers 6', (i) => {
      const body = forged[i % forged.length]!;
      try { ethers.SigningKey.recoverPublicKey(hash, `0x${body.password}`); } catch { /* forged */ }
    }],
  ];
  note('\n## 1. Signature recovery, one core\n\n| implementation | recoveries/s |\n|---|---|');
  for (const [name, run] of candidates) {
    let count = 0;
    const started = performance.now();
    while (performance.now() - started < 2000) run(count++);
    note(`| ${name} | ${rate(count, performance.now() - started).toLocaleString('en')} |`);
  }
}

function wrk(args: string[]): { rps: number; p50: string; raw: string } {
  const raw = execFileSync('wrk', ['--latency', ...args], { encoding: 'utf8' });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(raw)?.[1] ?? NaN);
  const p50 = /50%\s+(\S+)/.exec(raw)?.[1] ?? '?';
  return { rps: Math.round(rps), p50, raw };
}

function peakRssMb(pid: number): number {
  const kb = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
  return Math.round(kb / 1024);
}

async function main(): Promise<void> {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  note(`# Benchmarks\n\nRun: ${new Date().toISOString()} · ${cpus().length} × ${cpu} · Node ${process.version}` +
    ` · \`npm run bench\` (bench/run.ts). Load generator (wrk) on the same machine.`);
  const forged = Array.from({ length: FORGED_COUNT }, () => ({ ...signRegistration(randomPrivateKey(), SERVER), password: signRegistration(randomPrivateKey(), SERVER).password }));
  cryptoFigures(forged);

  const work = mkdtempSync(join(tmpdir(), 'regservice-bench-'));
  const forgedFile = join(work, 'forged.txt');
  writeFileSync(forgedFile, forged.map((body) => JSON.stringify(body)).join('\n') + '\n');
  const secretFile = join(work, 'secret');
  writeFileSync(secretFile, randomBytes(24).toString('hex'), { mode: 0o600 });
  const synapseOk = synapseAvailability().available && process.env.SYNAPSE_URL === undefined;
  const synapsePort = await freePort();
  const homeserverUrl = `http://127.0.0.1:${synapsePort}`;
  const gate = await generateGate({ serverName: SERVER, homeserverUrl, genconfigArgs: ['--sharesecret-file', secretFile] });
  const synapse = synapseOk ? await startSynapse({ serverName: SERVER, port: synapsePort, sharedSecretFile: secretFile, appserviceFiles: [gate.registrationFile] }) : undefined;

  try {
    const started = performance.now();
    const daemon = await gate.start(['--verbosity', '3', '--rate-limit-client', '0', '--rate-limit-node', '0']);
    const startupMs = Math.round(performance.now() - started);
    const pid = daemon.child.pid as number;
    const port = new URL(gate.url).port;

    note('\n## 2. HTTP rejections (built daemon, wrk -t1 -c64 -d10s, verbosity 3)\n');
    if (spawnSync('wrk', ['--version']).error !== undefined) {
      note('wrk is not installed (apt-get install wrk): no HTTP figures.');
    } else {
      const forgedRun = wrk(['-t1', '-c64', '-d10s', '-s', 'bench/forged.lua', `http://127.0.0.1:${port}`, '--', forgedFile]);
      const garbageScript = join(work, 'garbage.lua');
      writeFileSync(garbageScript, 'wrk.method = "POST"\nwrk.body = "{\\"localpart\\": 12, \\"junk\\""\nwrk.headers["Content-Type"] = "application/json"\n');
      const garbageRun = wrk(['-t1', '-c64', '-d10s', '-s', garbageScript, `http://127.0.0.1:${port}/regapp/1/register`]);
      const noopPort = await freePort();
      const noop = spawn(process.execPath, ['bench/noopServer.mjs', String(noopPort)], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise((resolve) => noop.stdout?.once('data', resolve));
      const noopRun = wrk(['-t1', '-c64', '-d10s', '-s', 'bench/forged.lua', `http://127.0.0.1:${noopPort}`, '--', forgedFile]);
      noop.kill();
      note('| load | requests/s | p50 latency | target |\n|---|---|---|---|');
      note(`| ${FORGED_COUNT.toLocaleString('en')} distinct forged signatures (403) | ${forgedRun.rps.toLocaleString('en')} | ${forgedRun.p50} | ≥ 12,000 (${forgedRun.rps >= 12000 ? 'met' : 'not met'}) |`);
      note(`| garbage JSON body (400) | ${garbageRun.rps.toLocaleString('en')} | ${garbageRun.p50} | |`);
      note(`| reference: a no-op node:http server (reads the body, answers 403; bench/noopServer.mjs), forged load | ${noopRun.rps.toLocaleString('en')} | ${noopRun.p50} | |`);
      note('\nThe reference row is the ceiling of this load generator against any Node server on these cores: ' +
        'a verifier must also spend one recovery (section 1) per forged request.');
    }
    note(`\nPeak RSS of the daemon after the runs above (64 connections): ${peakRssMb(pid)} MB (target ≤ 120 MB: ${peakRssMb(pid) <= 120 ? 'met' : 'not met'}). ` +
      `Start-up, spawn to first answer: ${startupMs} ms.`);

    note('\n## 3. Valid registrations against a real Synapse\n');
    if (synapse === undefined) {
      note(`No Synapse here (root and ${SYNAPSE_ROOT} needed): no registration figures.`);
    } else {
      const version = execFileSync('chroot', [SYNAPSE_ROOT, 'python3', '-c', 'import synapse; print(synapse.__version__)'], { encoding: 'utf8' }).trim();
      const count = 400;
      const concurrency = 16;
      const measure = async (one: (index: number) => Promise<void>, total: number): Promise<{ rps: number; p50: number }> => {
        const latencies: number[] = [];
        let next = 0;
        const startedAt = performance.now();
        await Promise.all(Array.from({ length: concurrency }, async () => {
          while (next < total) {
            const index = next++;
            const t = performance.now();
            await one(index);
            latencies.push(performance.now() - t);
          }
        }));
        return { rps: rate(total, performance.now() - startedAt), p50: percentile(latencies, 50) };
      };
      const viaService = Array.from({ length: count }, () => signRegistration(randomPrivateKey(), SERVER));
      const direct = Array.from({ length: count }, () => signRegistration(randomPrivateKey(), SERVER));
      const expectOk = (response: Response, what: string): void => {
        if (!response.ok) throw new Error(`${what}: HTTP ${response.status}`);
      };
      const directRun = async (index: number): Promise<void> => {
        const body = direct[index]!;
        const answer = await sharedSecretRegister(synapse, { username: body.localpart, password: body.password, displayname: body.displayname });
        if (answer.status !== 200) throw new Error(`direct registration: HTTP ${answer.status}`);
      };
      const serviceRun = async (index: number): Promise<void> => {
        const response = await fetch(`${gate.url}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(viaService[index]) });
        expectOk(response, 'registration through the service');
        await response.arrayBuffer();
      };
      // Alternate halves: Synapse slows as its database grows, which would favour whichever ran first.
      const half = count / 2;
      const combine = (a: { rps: number; p50: number }, b: { rps: number; p50: number }) => ({ rps: Math.round((a.rps + b.rps) / 2), p50: (a.p50 + b.p50) / 2 });
      const d1 = await measure((index) => directRun(index), half);
      const s1 = await measure((index) => serviceRun(index), half);
      const s2 = await measure((index) => serviceRun(index + half), half);
      const d2 = await measure((index) => directRun(index + half), half);
      const directResult = combine(d1, d2);
      const serviceResult = combine(s1, s2);
      const ratio = serviceResult.rps / directResult.rps;
      const added = serviceResult.p50 - directResult.p50;
      note(`Synapse ${version}, ${count} registrations each, ${concurrency} at a time, in alternating halves (direct, service, service, direct).\n`);
      note('| path | registrations/s | p50 latency |\n|---|---|---|');
      note(`| direct shared-secret registration | ${directResult.rps} | ${directResult.p50.toFixed(1)} ms |`);
      note(`| through matrix-regservice | ${serviceResult.rps} | ${serviceResult.p50.toFixed(1)} ms |`);
      note(`\nRatio ${ratio.toFixed(2)} (target ≥ 0.97: ${ratio >= 0.97 ? 'met' : 'not met'}); p50 added by the service ${added.toFixed(1)} ms (target ≤ 5 ms: ${added <= 5 ? 'met' : 'not met'}).`);
    }
  } finally {
    await gate.stop();
    await synapse?.stop();
    rmSync(work, { recursive: true, force: true });
    rmSync(gate.dir, { recursive: true, force: true });
  }
  writeFileSync('BENCHMARKS.md', `${lines.join('\n')}\n`);
  process.stdout.write('\nwritten to BENCHMARKS.md\n');
}

await main();
