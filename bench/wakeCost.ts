import { fork } from 'node:child_process';
import { cpuSeconds } from './measure.js';

export interface WakeCost {
  /** CPU of both processes per round trip, µs, one after another. */
  readonly backToBackUs: number;
  /**
   * The same with a pause between round trips, so that both processes sleep before each: three wake-ups each (this
   * process's timer, the echo's message, the answer). The bench process's other work in that time counts too.
   */
  readonly pacedUs: number;
  readonly gapMs: number;
}

/**
 * What it costs this machine to wake a sleeping Node process: IPC round trips between two processes (node:cluster's
 * channel, JSON, a message the size of a registration), back to back and at a registration's pace against Synapse.
 */
export async function wakeCost(gapMs: number): Promise<WakeCost> {
  if (!(gapMs >= 1)) throw new Error(`wakeCost: a pause of ${gapMs} ms between round trips measures no wake-up`);
  const child = fork(new URL('ipcEcho.mjs', import.meta.url).pathname, [], { serialization: 'json', stdio: 'ignore' });
  const childPid = child.pid;
  if (childPid === undefined) throw new Error('wakeCost: the echo process did not start');
  // An echo that is gone fails the round trip waiting for it, instead of leaving it waiting for ever.
  let gone: Error | undefined;
  const waiting = new Set<(error: Error) => void>();
  const fail = (error: Error): void => {
    gone = error;
    for (const reject of waiting) reject(error);
  };
  child.once('exit', (code, signal) => fail(new Error(`wakeCost: the echo process exited (${signal ?? code})`)));
  child.on('error', fail);
  const message = { localpart: `0x${'0'.repeat(40)}`, password: '0'.repeat(130), displayname: `0000-${'0'.repeat(130)}` };
  const roundTrip = (): Promise<void> =>
    new Promise((resolve, reject) => {
      if (gone !== undefined) return reject(gone);
      waiting.add(reject);
      child.once('message', () => {
        waiting.delete(reject);
        resolve();
      });
      child.send(message);
    });
  const perRoundTripUs = async (count: number, gap: number): Promise<number> => {
    const before = cpuSeconds(process.pid) + cpuSeconds(childPid);
    for (let i = 0; i < count; i++) {
      await roundTrip();
      if (gap > 0) await new Promise((resolve) => setTimeout(resolve, gap));
    }
    return ((cpuSeconds(process.pid) + cpuSeconds(childPid) - before) / count) * 1e6;
  };
  try {
    await perRoundTripUs(1000, 0);
    return { backToBackUs: await perRoundTripUs(50_000, 0), pacedUs: await perRoundTripUs(2_000, gapMs), gapMs };
  } finally {
    child.removeAllListeners('exit');
    child.kill();
  }
}
