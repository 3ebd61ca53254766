import { execFileSync } from 'node:child_process';
import { fmt, median, note, peakRss, treeCpuSeconds, type Daemon } from './measure.js';

/** wrk's settings for every measured run: one thread, 32 connections, 10 s. */
export const WRK_ARGS = ['-t1', '-c32', '-d10s'];
const ROUNDS = 3;

/** A daemon to compare, by name: started afresh for each run, given the service's rate-limit flags of a table. */
export type RefusalConfig = readonly [string, (limits: readonly string[]) => () => Promise<Daemon>];

function wrk(script: string, port: number, args: readonly string[], duration = WRK_ARGS): { requests: number; rps: number; p50: string } {
  const raw = execFileSync('wrk', ['--latency', ...duration, '-s', script, `http://127.0.0.1:${port}`, '--', ...args], {
    encoding: 'utf8',
  });
  const requests = Number(/(\d+) requests in/.exec(raw)?.[1] ?? NaN);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(raw)?.[1] ?? NaN);
  return { requests, rps: Math.round(rps), p50: /^\s*50%\s+(\S+)/m.exec(raw)?.[1] ?? '?' }; // the distribution's line, not a "+/- Stdev" ending in 50%
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

/**
 * Forged-signature refusals through wrk: rate limits off, then a botnet's ever-new client addresses with the default
 * limits, each configuration in interleaved rounds; then the targets against the Go original (when it is among them).
 */
export async function refusalFigures(
  configs: readonly RefusalConfig[],
  forgedFile: string,
  cores: number,
  /** Which of the configurations are the service in one process and with its default workers, and the Go original. */
  names: { readonly defaultWorkers: string; readonly oneProcess: string; readonly goOriginal: string },
): Promise<void> {
  for (const name of [names.oneProcess, names.defaultWorkers])
    if (!configs.some(([each]) => each === name)) throw new Error(`refusalFigures: no configuration named ${name}`);
  const table = async (title: string, script: string, serviceArgs: readonly string[], rounds: number): Promise<Map<string, LoadResult>> => {
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

  const goOpen = open.get(names.goOriginal);
  const ours = open.get(names.defaultWorkers)!;
  const one = open.get(names.oneProcess)!;
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
  const oneProcess = botnet.get(names.oneProcess);
  if (oneProcess !== undefined)
    note(
      `- One process (\`--workers 0\`) under the botnet load: peak RSS ${oneProcess.rss.main} MB (target ≤ 100 MB: ${oneProcess.rss.main <= 100 ? 'met' : 'not met'}); ` +
        `${fmt(oneProcess.rps)} refusals/s at ${oneProcess.cpuUs.toFixed(0)} µs each.`,
    );
  note(
    `- Scaling: ${fmt(one.rps)}/s in one process, ${fmt(ours.rps)}/s with default workers (${(ours.rps / one.rps).toFixed(2)}×) on ${cores} cores that wrk shares. ` +
      `One refusal costs ${ours.cpuUs.toFixed(0)} µs of CPU here, so a 16-core machine with the load generated elsewhere would refuse about ` +
      `16 ÷ ${ours.cpuUs.toFixed(0)} µs ≈ **${fmt(16 / (ours.cpuUs / 1e6))}/s**${goOpen === undefined ? '' : ` (the Go original, at ${goOpen.cpuUs.toFixed(0)} µs: ≈ ${fmt(16 / (goOpen.cpuUs / 1e6))}/s)`}.`,
  );
}
