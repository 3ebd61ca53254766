import { fork } from 'node:child_process';
import { cpuSeconds } from './measure.js';

export interface WakeCost {
  /** CPU of both processes per round trip, µs, one after another. */
  readonly backToBackUs: number;
  /** The same with a pause between round trips, so that both processes sleep before each: three wake-ups each. */
  readonly pacedUs: number;
  readonly gapMs: number;
}

/**
 * What it costs this machine to wake a sleeping Node process: IPC round trips between two processes (node:cluster's
 * channel, JSON, a message the size of a registration), back to back and at a registration's pace against Synapse.
 */
export async function wakeCost(gapMs: number): Promise<WakeCost> {
  const child = fork(new URL('ipcEcho.mjs', import.meta.url).pathname, [], { serialization: 'json', stdio: 'ignore' });
  const message = { localpart: `0x${'0'.repeat(40)}`, password: '0'.repeat(130), displayname: `0000-${'0'.repeat(130)}` };
  const roundTrip = (): Promise<void> =>
    new Promise((resolve) => {
      child.once('message', () => resolve());
      child.send(message);
    });
  const perRoundTripUs = async (count: number, gap: number): Promise<number> => {
    const before = cpuSeconds(process.pid) + cpuSeconds(child.pid as number);
    for (let i = 0; i < count; i++) {
      await roundTrip();
      if (gap > 0) await new Promise((resolve) => setTimeout(resolve, gap));
    }
    return ((cpuSeconds(process.pid) + cpuSeconds(child.pid as number) - before) / count) * 1e6;
  };
  try {
    await perRoundTripUs(1000, 0);
    return { backToBackUs: await perRoundTripUs(50_000, 0), pacedUs: await perRoundTripUs(2_000, gapMs), gapMs };
  } finally {
    child.kill();
  }
}
