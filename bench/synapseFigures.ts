import { execFileSync } from 'node:child_process';
import { createSharedSecretRegistrar } from '../src/homeserver/sharedSecretRegistrar.js';
import type { NewNode } from '../src/homeserver/registrar.js';
import { SYNAPSE_ROOT, type RunningSynapse } from '../test/support/synapse.js';
import { fmt, median, note, percentile, rate, SERVER, treeUsage, type Daemon } from './measure.js';
import { allRegistered, postAll, type LoadOutcome } from './postLoad.js';
import { signedBodies } from './signedBodies.js';
import { wakeCost } from './wakeCost.js';

const ROUNDS = 3;
const CONCURRENCY = 16;
/**
 * A run is at least this many registrations, and at least MIN_RUN_MS long. BENCH_SYNAPSE_REGISTRATIONS makes runs of
 * that many, for trying the bench: such figures say so and are not the targets' measure.
 */
const SHORTENED = process.env.BENCH_SYNAPSE_REGISTRATIONS === undefined ? undefined : Number(process.env.BENCH_SYNAPSE_REGISTRATIONS);
const MIN_COUNT = SHORTENED ?? 20_000;
const MIN_RUN_MS = SHORTENED === undefined ? 30_000 : 0;

export interface SynapsePaths {
  /**
   * Synapse restarted on an empty database, on the port the service was given. Every run starts on one: Synapse on
   * SQLite slows as its users grow (here 147 registrations/s over its first 20,000 users, 19/s past 120,000), so runs on
   * one growing database would compare their places in the order, not the paths.
   */
  readonly freshSynapse: () => Promise<RunningSynapse>;
  /** The service's /register URL. */
  readonly registerUrl: string;
  readonly service: () => Promise<Daemon>;
  readonly servicePg: (() => Promise<Daemon>) | undefined;
  readonly goOriginal: (() => Promise<{ daemon: Daemon; registerUrl: string }>) | undefined;
}

interface PathRun {
  readonly rps: number;
  readonly p50: number;
  /** The daemon's CPU per registration, ms (its whole process tree); undefined for direct registrations. */
  readonly cpuMs: number | undefined;
  /** The daemon's context switches per registration, every thread of its tree; undefined for direct registrations. */
  readonly switches: number | undefined;
}

/**
 * Direct shared-secret registration with the service's own homeserver client (the same code and HTTP client), from
 * this process: what the service's path is compared with.
 */
async function direct(synapse: RunningSynapse, bodies: readonly string[]): Promise<LoadOutcome> {
  const registrar = createSharedSecretRegistrar({
    homeserverUrl: synapse.url,
    serverName: SERVER,
    sharedSecret: synapse.sharedSecret,
    timeoutMs: 60_000,
    login: false,
  });
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < bodies.length) {
        const node = JSON.parse(bodies[next++] as string) as NewNode;
        const sent = performance.now();
        await registrar.register(node);
        latencies.push(performance.now() - sent);
      }
    }),
  );
  return { count: bodies.length, ms: performance.now() - started, latencies, statuses: new Map([[200, bodies.length]]) };
}

/** Registrations a run of `path` needs: MIN_COUNT, or more when the first round showed them done in under MIN_RUN_MS. */
const countFor = (rps: number | undefined): number => Math.max(MIN_COUNT, Math.ceil(((rps ?? 0) * MIN_RUN_MS * 1.1) / 1000));

/**
 * Valid registrations through the service (LevelDB and PostgreSQL stores) against a real Synapse, beside direct
 * shared-secret registration, in 3 rounds whose order alternates (Synapse slows as its database grows); the Go
 * original once.
 */
export async function synapseFigures(paths: SynapsePaths): Promise<void> {
  const version = execFileSync('chroot', [SYNAPSE_ROOT, 'python3', '-c', 'import synapse; print(synapse.__version__)'], {
    encoding: 'utf8',
  }).trim();
  const runs = new Map<string, PathRun[]>();
  const lastRps = new Map<string, number>();
  const record = (name: string, run: PathRun): void => {
    runs.set(name, [...(runs.get(name) ?? []), run]);
    lastRps.set(name, run.rps);
  };
  const throughService = async (name: string, start: () => Promise<Daemon>, url: () => string): Promise<void> => {
    const bodies = signedBodies(countFor(lastRps.get(name)), SERVER);
    await paths.freshSynapse();
    const daemon = await start();
    try {
      const before = treeUsage(daemon.pid);
      const outcome = await postAll(url(), bodies, CONCURRENCY);
      allRegistered(outcome, name);
      const after = treeUsage(daemon.pid);
      record(name, {
        rps: rate(outcome.count, outcome.ms),
        p50: percentile(outcome.latencies, 50),
        cpuMs: ((after.cpuSeconds - before.cpuSeconds) / outcome.count) * 1000,
        switches: (after.switches - before.switches) / outcome.count,
      });
    } finally {
      await daemon.stop();
    }
  };
  const DIRECT = 'direct shared-secret registration';
  const LEVEL = 'through matrix-regservice (LevelDB)';
  const PG = 'through matrix-regservice (PostgreSQL)';
  const GO = 'through the Go original';
  const steps: Record<string, () => Promise<void>> = {
    [DIRECT]: async () => {
      const bodies = signedBodies(countFor(lastRps.get(DIRECT)), SERVER);
      const outcome = await direct(await paths.freshSynapse(), bodies);
      record(DIRECT, {
        rps: rate(outcome.count, outcome.ms),
        p50: percentile(outcome.latencies, 50),
        cpuMs: undefined,
        switches: undefined,
      });
    },
    [LEVEL]: () => throughService(LEVEL, paths.service, () => paths.registerUrl),
    ...(paths.servicePg === undefined ? {} : { [PG]: () => throughService(PG, paths.servicePg!, () => paths.registerUrl) }),
  };
  const ratios: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const order = Object.keys(steps);
    if (round % 2 === 1) order.reverse();
    for (const name of order) await steps[name]?.();
    const level = runs.get(LEVEL)?.[round]?.rps;
    const directRps = runs.get(DIRECT)?.[round]?.rps;
    if (level !== undefined && directRps !== undefined) ratios.push(level / directRps);
  }
  if (paths.goOriginal !== undefined) {
    const bodies = signedBodies(MIN_COUNT, SERVER);
    await paths.freshSynapse();
    const { daemon, registerUrl } = await paths.goOriginal();
    try {
      const outcome = await postAll(registerUrl, bodies, CONCURRENCY);
      allRegistered(outcome, GO);
      record(GO, { rps: rate(outcome.count, outcome.ms), p50: percentile(outcome.latencies, 50), cpuMs: undefined, switches: undefined });
    } finally {
      await daemon.stop();
    }
  }

  const directMedian = median((runs.get(DIRECT) ?? []).map((run) => run.rps));
  note(
    `Synapse ${version} (bcrypt_rounds 4, SQLite) on the same 2 cores as the service and the load generator. ${ROUNDS} rounds, each path ` +
      `${SHORTENED === undefined ? `at least ${fmt(MIN_COUNT)} registrations and ${MIN_RUN_MS / 1000} s` : `**${fmt(MIN_COUNT)} registrations only (BENCH_SYNAPSE_REGISTRATIONS: a shortened run, not the targets' measure)**`} per round, ${CONCURRENCY} in flight, in alternating order, ` +
      `each run on a fresh Synapse database (on SQLite, Synapse slows as its users grow); the service with its default workers, rate limits and account ceilings off ` +
      `(every request comes from one client here); the Go original once, after the rounds. Direct registration uses the ` +
      `service's own homeserver client, from the load generator's process.\n`,
  );
  note(
    '| path | registrations/s (median) | range | p50 latency | service CPU per registration | service context switches per registration | ÷ direct |\n' +
      '|---|---|---|---|---|---|---|',
  );
  for (const [name, results] of runs) {
    const rpsValues = results.map((run) => run.rps);
    const cpu = results.flatMap((run) => (run.cpuMs === undefined ? [] : [run.cpuMs]));
    const switches = results.flatMap((run) => (run.switches === undefined ? [] : [run.switches]));
    note(
      `| ${name} | ${fmt(median(rpsValues))} | ${fmt(Math.min(...rpsValues))}–${fmt(Math.max(...rpsValues))} | ` +
        `${median(results.map((run) => run.p50)).toFixed(1)} ms | ${cpu.length === 0 ? '' : `${median(cpu).toFixed(2)} ms`} | ` +
        `${switches.length === 0 ? '' : median(switches).toFixed(1)} | ${(median(rpsValues) / directMedian).toFixed(2)} |`,
    );
  }
  const levelRps = median((runs.get(LEVEL) ?? []).map((run) => run.rps));
  const wake = await wakeCost(Math.max(1, Math.round(1000 / levelRps)));
  const ratio = median(ratios);
  const cpuMs = median((runs.get(LEVEL) ?? []).flatMap((run) => (run.cpuMs === undefined ? [] : [run.cpuMs])));
  note(
    `\n- Through the service ÷ direct, median of the ${ROUNDS} rounds' ratios (${ratios.map((r) => r.toFixed(2)).join(', ')}): ` +
      `**${ratio.toFixed(2)}** (target ≥ 0.95: ${ratio >= 0.95 ? 'met' : 'not met'}).`,
  );
  note(
    `- The service's CPU per registration against Synapse (LevelDB, whole process tree): **${cpuMs.toFixed(2)} ms** ` +
      `(target ≤ 1 ms: ${cpuMs <= 1 ? 'met' : 'not met'}). At Synapse's pace each registration's work comes alone: ` +
      `nothing to batch, and every step wakes a process (section 4 has the same work at full speed).`,
  );
  note(
    `- What a wake-up costs on this machine: an IPC round trip between two Node processes took ${wake.backToBackUs.toFixed(0)} µs ` +
      `of CPU (both processes) back to back, and ${wake.pacedUs.toFixed(0)} µs at one every ${wake.gapMs} ms, this section's pace, ` +
      `when both sleep before each (bench/wakeCost.ts): about ${((wake.pacedUs - wake.backToBackUs) / 3).toFixed(0)} µs more for each ` +
      `of its three wake-ups. The context switches per registration above (voluntary and involuntary, every thread), ` +
      `against section 4's at full speed, show how many more times the service's threads slept and woke here.`,
  );
}
