import { strict as assert } from 'node:assert';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { CallLimiter } from '../../src/homeserver/callLimiter.js';
import { createServer } from 'node:http';
import { createRequestListener } from '../../src/http/app.js';
import { registerRoute } from '../../src/http/registerRoute.js';
import { createRateLimits } from '../../src/http/rateLimits.js';
import { MatrixError } from '../../src/protocol/matrixError.js';
import { randomPrivateKey, signRegistration } from '../../src/protocol/signRegistration.js';
import { capturingLogger } from '../support/capturingLogger.js';

describe('CallLimiter', () => {
  it('runs at most maxActive calls, queues up to maxQueued, refuses the rest with 503 and Retry-After', async () => {
    const limiter = new CallLimiter(2, 1);
    const releases: (() => void)[] = [];
    let running = 0;
    let peak = 0;
    const call = () =>
      limiter.run(
        () =>
          new Promise<string>((resolve) => {
            running += 1;
            peak = Math.max(peak, running);
            releases.push(() => {
              running -= 1;
              resolve('done');
            });
          }),
      );
    const calls = [call(), call(), call()];
    await assert.rejects(call(), (error: unknown) => error instanceof MatrixError && error.status === 503 && error.headers['Retry-After'] === '1');
    assert.equal(limiter.inFlight, 2);
    assert.equal(limiter.queued, 1);
    releases.shift()?.();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(limiter.queued, 0, 'the queued call took the freed slot');
    while (releases.length > 0) releases.shift()?.();
    await new Promise((resolve) => setImmediate(resolve));
    releases.shift()?.();
    assert.deepEqual(await Promise.all(calls), ['done', 'done', 'done']);
    assert.equal(peak, 2);
    assert.equal(limiter.inFlight, 0);
  });

  it('frees the slot when a call fails', async () => {
    const limiter = new CallLimiter(1, 0);
    await assert.rejects(limiter.run(() => Promise.reject(new Error('boom'))), /boom/);
    assert.equal(await limiter.run(async () => 'next'), 'next');
  });
});

async function serve(trustedProxies: string, perClient: number, perNode: number): Promise<{ base: string; server: Server }> {
  const log = capturingLogger().log;
  const listener = createRequestListener({
    basePath: '/regapp/1',
    hsToken: 'hs',
    registerRoute: registerRoute({
      handle: async (request) => ({ userId: `@${request.localpart}:hs`, homeServer: 'hs' }),
      limits: createRateLimits({ perClientPerMinute: perClient, perNodePerMinute: perNode }),
      log,
      trustedProxies,
    }),
    onTransaction: async () => 'processed',
    queryUser: async () => false,
    log,
  });
  const server = createServer(listener).listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}/regapp/1`, server };
}

async function post(base: string, body: unknown, forwardedFor?: string) {
  const response = await fetch(`${base}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor }) },
    body: JSON.stringify(body),
  });
  return { status: response.status, retryAfter: response.headers.get('retry-after'), body: (await response.json()) as Record<string, unknown> };
}

describe('rate limits', () => {
  const nodes = Array.from({ length: 6 }, () => signRegistration(randomPrivateKey(), 'hs'));

  it('limits each client address, taken from X-Forwarded-For only when the peer is a trusted proxy', async () => {
    const { base, server } = await serve('loopback', 3, 0);
    for (const node of nodes.slice(0, 3)) assert.equal((await post(base, node, '203.0.113.7')).status, 200);
    const limited = await post(base, nodes[3], '203.0.113.7');
    assert.equal(limited.status, 429);
    assert.equal(limited.body.errcode, 'M_LIMIT_EXCEEDED');
    assert.ok(Number(limited.retryAfter) >= 1 && Number(limited.retryAfter) <= 60);
    assert.equal(typeof limited.body.retry_after_ms, 'number');
    assert.equal((await post(base, nodes[3], '198.51.100.1')).status, 200, 'another client is not limited');
    server.close();

    const untrusted = await serve('192.0.2.1', 3, 0);
    for (const [index, node] of nodes.slice(0, 3).entries()) {
      assert.equal((await post(untrusted.base, node, `203.0.113.${index}`)).status, 200);
    }
    assert.equal((await post(untrusted.base, nodes[3], '203.0.113.99')).status, 429, 'a forged X-Forwarded-For does not escape the limit');
    untrusted.server.close();
  });

  it('limits each node address, and a limit of 0 turns a limit off', async () => {
    const { base, server } = await serve('loopback', 0, 2);
    assert.equal((await post(base, nodes[0])).status, 200);
    assert.equal((await post(base, nodes[0])).status, 200);
    assert.equal((await post(base, nodes[0])).status, 429);
    assert.equal((await post(base, nodes[1])).status, 200);
    server.close();
  });
});
