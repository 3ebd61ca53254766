import { Agent, request } from 'node:http';

export interface LoadOutcome {
  readonly count: number;
  readonly ms: number;
  readonly latencies: number[];
  /** Answers per status. */
  readonly statuses: ReadonlyMap<number, number>;
}

/**
 * POSTs `bodies` to `url`, `concurrency` at a time on kept-alive connections, until they are all sent. Node's own
 * client: fetch() would spend the shared cores on itself.
 */
export async function postAll(url: string, bodies: readonly string[], concurrency = 16): Promise<LoadOutcome> {
  const target = new URL(url);
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const post = (body: string): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = request(
        {
          host: target.hostname,
          port: target.port,
          path: target.pathname,
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  const latencies: number[] = [];
  const statuses = new Map<number, number>();
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < bodies.length) {
        const body = bodies[next++] as string;
        const sent = performance.now();
        const status = await post(body);
        latencies.push(performance.now() - sent);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    }),
  );
  const ms = performance.now() - started;
  agent.destroy();
  return { count: bodies.length, ms, latencies, statuses };
}

/** Every answer was a 200, or says which were not. */
export function allRegistered(outcome: { readonly statuses: ReadonlyMap<number, number> }, what: string): void {
  const others = [...outcome.statuses].filter(([status]) => status !== 200);
  if (others.length > 0) throw new Error(`${what}: answers other than 200: ${JSON.stringify(others)}`);
}
