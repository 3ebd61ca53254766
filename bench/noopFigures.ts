import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Level } from 'level';
import { join } from 'node:path';
import { openLevelStore, STORE_DIRECTORY } from '../src/store/leveldb/levelStore.js';
import type { Store } from '../src/store/store.js';
import { childrenOf, cpuSeconds, fmt, note, peakRss, rate, SERVER, treeCpuSeconds, treeUsage, type Daemon } from './measure.js';
import { allRegistered, postAll } from './postLoad.js';
import { signedBodies } from './signedBodies.js';

const CONCURRENCY = 16;
const MIN_COUNT = 20_000;
const MIN_RUN_MS = 30_000;
const WARM_UP = 2_000;
export const MILLION = 1_000_000;

/** The no-op homeserver (bench/noopHomeserver.mjs) as a process of its own; its CPU is nobody's here. */
export async function startNoopHomeserver(): Promise<{ url: string; stop: () => Promise<void> }> {
  const child: ChildProcess = spawn(process.execPath, [new URL('noopHomeserver.mjs', import.meta.url).pathname, SERVER], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.stdout?.once('data', (data: Buffer) => resolve(Number(data.toString().trim())));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

export interface FloorRun {
  readonly count: number;
  readonly rps: number;
  /** CPU per registration, ms: the whole tree, the primary, the workers. */
  readonly cpuMs: number;
  readonly primaryMs: number;
  readonly workersMs: number;
  /** Context switches per registration, every thread of the tree (section 3 has the same at Synapse's pace). */
  readonly switches: number;
  readonly rss: { main: number; worker: number | undefined };
}

/**
 * Registrations as fast as the service takes them: a warm-up, then at least MIN_COUNT and MIN_RUN_MS (the count
 * sized from the warm-up's pace), signed before the clock starts.
 */
export async function floorRun(daemon: Daemon, registerUrl: string, what: string): Promise<FloorRun> {
  const warmUp = await postAll(registerUrl, signedBodies(WARM_UP, SERVER), CONCURRENCY);
  allRegistered(warmUp, `${what} (warm-up)`);
  const count = Math.max(MIN_COUNT, Math.ceil((rate(warmUp.count, warmUp.ms) * MIN_RUN_MS * 1.2) / 1000));
  const bodies = signedBodies(count, SERVER);
  const tree = treeUsage(daemon.pid);
  const primary = cpuSeconds(daemon.pid);
  const outcome = await postAll(registerUrl, bodies, CONCURRENCY);
  allRegistered(outcome, what);
  const after = treeUsage(daemon.pid);
  const treeCpu = after.cpuSeconds - tree.cpuSeconds;
  const primaryCpu = cpuSeconds(daemon.pid) - primary;
  return {
    count,
    rps: rate(outcome.count, outcome.ms),
    cpuMs: (treeCpu / count) * 1000,
    primaryMs: (primaryCpu / count) * 1000,
    workersMs: ((treeCpu - primaryCpu) / count) * 1000,
    switches: (after.switches - tree.switches) / count,
    rss: peakRss(daemon.pid),
  };
}

const IDLE_SETTLE_MS = 30_000;
const IDLE_MS = 20_000;

/** The service's CPU while nobody asks anything (timers, metrics, the store's background work), ms per second. */
async function idleCpuMsPerSecond(daemon: Daemon): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, IDLE_SETTLE_MS));
  const before = treeCpuSeconds(daemon.pid);
  await new Promise((resolve) => setTimeout(resolve, IDLE_MS));
  return ((treeCpuSeconds(daemon.pid) - before) / IDLE_MS) * 1e6;
}

const row = (what: string, run: FloorRun): string =>
  `| ${what} | ${fmt(run.count)} | ${fmt(run.rps)} | **${run.cpuMs.toFixed(2)} ms** | ${run.primaryMs.toFixed(2)} / ${run.workersMs.toFixed(2)} ms | ` +
  `${run.switches.toFixed(1)} | ${run.rss.main} / ${run.rss.worker ?? '?'} MB |`;

const HEADER =
  '| store | registrations | registrations/s | CPU per registration (whole tree) | primary / workers | context switches per registration | peak RSS: primary / largest worker |\n' +
  '|---|---|---|---|---|---|---|';

/** The service's own cost per verified registration, against a homeserver that costs nothing. */
export async function noopFigures(
  noopUrl: string,
  registerUrl: string,
  service: (args: readonly string[]) => () => Promise<Daemon>,
  databaseArgs: readonly string[] | undefined,
): Promise<void> {
  const stores: [string, readonly string[]][] = [
    ['LevelDB', []],
    ...(databaseArgs === undefined ? [] : [['PostgreSQL', databaseArgs] as [string, readonly string[]]]),
  ];
  const results = new Map<string, FloorRun>();
  const idle = new Map<string, number>();
  for (const [name, args] of stores) {
    const daemon = await service(['--matrixurl', noopUrl, ...args])();
    try {
      idle.set(name, await idleCpuMsPerSecond(daemon));
      results.set(name, await floorRun(daemon, registerUrl, `the service on ${name}`));
    } finally {
      await daemon.stop();
    }
  }
  note(
    `A homeserver that answers the nonce and the registration at once (bench/noopHomeserver.mjs, a process of its own), ` +
      `${CONCURRENCY} registrations in flight, distinct signed nodes, each run at least ${fmt(MIN_COUNT)} registrations and ` +
      `${MIN_RUN_MS / 1000} s after a warm-up of ${fmt(WARM_UP)}; run.sh's flags, default workers, rate limits and account ` +
      `ceilings off. CPU is utime+stime of the service's processes (every thread: LevelDB's compactions count).\n`,
  );
  note(HEADER);
  for (const [name, run] of results) note(row(name, run));
  note(
    `\n- Idle, before the warm-up (${IDLE_SETTLE_MS / 1000} s after start-up, then ${IDLE_MS / 1000} s with no request): the service's processes used ` +
      [...idle].map(([name, ms]) => `${ms.toFixed(1)} ms of CPU a second on ${name}`).join(', ') +
      ' (no `--metrics-port`, as run.sh starts it: no process collects the Node.js process metrics).',
  );
  for (const [name, run] of results) {
    note(
      `\n- ${name}: ${run.cpuMs.toFixed(2)} ms of CPU per registration (target ≤ 0.6 ms: ${run.cpuMs <= 0.6 ? 'met' : 'not met'}); ` +
        `${fmt(run.rps)} registrations/s (target ≥ 1,000: ${run.rps >= 1000 ? 'met' : 'not met'}).`,
    );
  }
}

/** A node record as the service writes one, for a fresh key. */
function recordOf(): Parameters<Store['nodes']['put']>[0] {
  const localpart = `0x${randomBytes(20).toString('hex')}`;
  return {
    localpart,
    userId: `@${localpart}:${SERVER}`,
    displayname: `${localpart.slice(2, 6)}-${randomBytes(65).toString('hex')}`,
    registeredAt: new Date().toISOString(),
    answered: true,
  };
}

/** Writes `count` node records through the store's own put, `inFlight` at a time; seconds taken. */
export async function seedStore(store: Store, count: number, inFlight: number): Promise<number> {
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < count) {
        next += 1;
        await store.nodes.put(recordOf());
      }
    }),
  );
  return (performance.now() - started) / 1000;
}

/** A LevelDB datapath holding a million nodes, written through the store, then compacted as months of use would. */
export async function millionNodeDatapath(datapath: string): Promise<number> {
  const store = await openLevelStore(datapath);
  const seconds = await seedStore(store, MILLION, 2000);
  await store.close();
  const db = new Level<string, unknown>(join(datapath, STORE_DIRECTORY));
  await db.open();
  // classic-level's own, beside the Level API: what LevelDB does in the background over months, done now.
  await (db as unknown as { compactRange(start: string, end: string): Promise<void> }).compactRange('\u0000', '\uffff');
  await db.close();
  return seconds;
}

export interface MillionRun extends FloorRun {
  readonly seededS: number;
  readonly startMs: number;
  readonly idleRss: { main: number; worker: number | undefined };
}

/** The service started on a million recorded nodes: start-up time, RSS idle and under registrations, the pace. */
export async function millionRun(seededS: number, start: () => Promise<Daemon>, registerUrl: string, what: string): Promise<MillionRun> {
  const started = performance.now();
  const daemon = await start();
  const startMs = performance.now() - started;
  try {
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const idleRss = peakRss(daemon.pid);
    const run = await floorRun(daemon, registerUrl, what);
    if (childrenOf(daemon.pid).length === 0) throw new Error(`${what}: the workers are gone`);
    return { ...run, seededS, startMs, idleRss };
  } finally {
    await daemon.stop();
  }
}

export function millionFigures(runs: ReadonlyMap<string, MillionRun>): void {
  note(
    `${fmt(MILLION)} node records written through the store's own put (LevelDB: then compacted, as a database that ` +
      `grew over months would be), then the service started on them against the no-op homeserver, as in section 4.\n`,
  );
  note(
    '| store | seeding | start-up (to listening) | idle peak RSS: primary / worker | registrations/s | CPU per registration | peak RSS under registrations: primary / largest worker |\n|---|---|---|---|---|---|---|',
  );
  for (const [name, run] of runs) {
    note(
      `| ${name} | ${run.seededS.toFixed(0)} s | ${(run.startMs / 1000).toFixed(2)} s | ${run.idleRss.main} / ${run.idleRss.worker ?? '?'} MB | ` +
        `${fmt(run.rps)} | ${run.cpuMs.toFixed(2)} ms | ${run.rss.main} / ${run.rss.worker ?? '?'} MB |`,
    );
  }
  const worst = Math.max(...[...runs.values()].flatMap((run) => [run.rss.main, run.rss.worker ?? 0, run.idleRss.main]));
  note(
    `\n- Peak RSS of any process with ${fmt(MILLION)} nodes: ${worst} MB (target ≤ 100 MB: ${worst <= 100 ? 'met' : 'not met'}). ` +
      'No process holds known nodes in memory: a lookup reads the store (LevelDB answers most lookups of new nodes from ' +
      "its tables' bloom filters, about 1.25 bytes a node, in the table files it maps, at most 32 tables of 1 MB open at once). " +
      'RSS includes the pages of the Node binary each process maps (about 40 MB, shared between them).',
  );
}
