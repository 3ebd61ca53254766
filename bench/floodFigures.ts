import { randomPrivateKey, signRegistration } from '../src/protocol/signRegistration.js';
import type { Gate } from '../test/support/gate.js';
import { waitFor } from '../test/support/ports.js';
import { floodAddresses, registerAs, startFlood, type Attempt, type FloodTally } from '../test/support/registrationFlood.js';
import { fmt, note, percentile, SERVER, type Daemon } from './measure.js';

/**
 * Nodes from networks of their own registering while two floods (an IPv6 /56 and an IPv4 /24, each past what the
 * homeserver slots and the default queue hold) keep Synapse at its full pace; beside the same nodes with no flood.
 */
export async function floodFigures(gate: Gate, start: () => Promise<Daemon>): Promise<void> {
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
