import { randomPrivateKey, signRegistration, type RegistrationBody } from '../../src/protocol/signRegistration.js';

/** What one registration request got: its status, the answer's errcode, its Retry-After and how long it took. */
export interface Attempt {
  readonly status: number;
  readonly errcode: string | undefined;
  readonly retryAfter: string | null;
  readonly ms: number;
}

/**
 * One correctly signed registration of a fresh key, POSTed to a gate as a trusted proxy (loopback) passes it on:
 * `client` in X-Forwarded-For.
 */
export async function registerAs(gateUrl: string, body: RegistrationBody, client: string): Promise<Attempt> {
  const started = performance.now();
  const response = await fetch(`${gateUrl}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-forwarded-for': client },
    body: JSON.stringify(body),
  });
  const answer = (await response.json().catch(() => ({}))) as { errcode?: string };
  return {
    status: response.status,
    errcode: answer.errcode,
    retryAfter: response.headers.get('retry-after'),
    ms: performance.now() - started,
  };
}

/** The n-th address of a flood: IPv4 hosts of one /24, or IPv6 /64s of one /56 (each its own subscriber). */
export const floodAddresses = {
  /** `base` like '203.0.113': .1 to .254 in turn. */
  ipv4Network: (base: string) => (n: number) => `${base}.${(n % 254) + 1}`,
  /** `base56` like '2001:db8:0:56': the /64s base56 + 00 … ff in turn, host ::1 in each. */
  ipv6Site: (base56: string) => (n: number) => `${base56}${(n % 256).toString(16).padStart(2, '0')}::1`,
};

export interface FloodTally {
  /** Requests answered, per status. */
  readonly statuses: ReadonlyMap<number, number>;
  /** Answers, per `status errcode` (`200 -` for a success). */
  readonly answers: ReadonlyMap<string, number>;
  /** Refusals that came without a Retry-After. */
  readonly withoutRetryAfter: number;
}

export interface Flood {
  /** Counts so far. */
  tally(): FloodTally;
  /** Stops sending and waits for the requests in flight. */
  stop(): Promise<FloodTally>;
}

/**
 * An attacker with fresh keys and correctly signed requests: `concurrency` loops, each registering one new node after
 * another from the next of its addresses. A refused loop waits the Retry-After it was given (a second at most) before
 * its next try, so that the machine the test shares with the homeserver spends its cores on registrations, not refusals:
 * the flood still offers the homeserver more than it can take.
 */
export function startFlood(options: {
  readonly gateUrl: string;
  readonly serverName: string;
  readonly concurrency: number;
  readonly address: (n: number) => string;
}): Flood {
  const statuses = new Map<number, number>();
  const answers = new Map<string, number>();
  let withoutRetryAfter = 0;
  let next = 0;
  let stopped = false;
  const loop = async (): Promise<void> => {
    while (!stopped) {
      const body = signRegistration(randomPrivateKey(), options.serverName);
      const attempt = await registerAs(options.gateUrl, body, options.address(next++)).catch((error: Error) => ({
        status: 0,
        errcode: error.message,
        retryAfter: null,
        ms: 0,
      }));
      statuses.set(attempt.status, (statuses.get(attempt.status) ?? 0) + 1);
      const answer = `${attempt.status} ${attempt.errcode ?? '-'}`;
      answers.set(answer, (answers.get(answer) ?? 0) + 1);
      if (attempt.status !== 200 && attempt.retryAfter === null) withoutRetryAfter += 1;
      if (attempt.status !== 200)
        await new Promise((resolve) => setTimeout(resolve, Math.min(1000, Number(attempt.retryAfter ?? 1) * 1000)));
    }
  };
  const loops = Array.from({ length: options.concurrency }, loop);
  const tally = (): FloodTally => ({ statuses: new Map(statuses), answers: new Map(answers), withoutRetryAfter });
  return {
    tally,
    async stop() {
      stopped = true;
      await Promise.all(loops);
      return tally();
    },
  };
}

export const count = (tally: FloodTally, status: number): number => tally.statuses.get(status) ?? 0;
