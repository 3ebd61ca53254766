import { strict as assert } from 'node:assert';
import { describe, it } from '../support/timedTests.js';
import { tempDir } from '../support/tempDir.js';
import { CallLimiter } from '../../src/homeserver/callLimiter.js';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadAddressPolicy } from '../../src/access/addressLists.js';
import type { RawSettings } from '../../src/config/settings.js';
import type { LimitSpec } from '../../src/store/rateLimiter.js';
import { HeldBackError, MatrixError } from '../../src/protocol/matrixError.js';
import { networkOf } from '../../src/access/networks.js';
import { createAccountCeilings, type AccountCeilingSettings, type CeilingReached } from '../../src/handlers/accountCeilings.js';
import { createMemoryCeilingCounter } from '../../src/store/memoryCeilingCounter.js';
import type { CeilingCounter } from '../../src/store/ceilingCounter.js';
import { randomPrivateKey, signRegistration } from '../../src/protocol/signRegistration.js';
import { IN_PROCESS_SERVER, startInProcessGate } from '../support/inProcessGate.js';

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
    await assert.rejects(
      call(),
      (error: unknown) => error instanceof MatrixError && error.status === 503 && error.headers['Retry-After'] === '1',
    );
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
    await assert.rejects(
      limiter.run(() => Promise.reject(new Error('boom'))),
      /boom/,
    );
    assert.equal(await limiter.run(async () => 'next'), 'next');
  });
});

async function post(base: string, body: unknown, forwardedFor?: string) {
  const response = await fetch(`${base}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor }) },
    body: JSON.stringify(body),
  });
  return {
    status: response.status,
    retryAfter: response.headers.get('retry-after'),
    body: (await response.json()) as Record<string, unknown>,
  };
}

const limitsOf = (client: number, node: number, more: RawSettings = {}): RawSettings => ({
  'rate-limit-client': client,
  'rate-limit-node': node,
  ...more,
});
const sign = () => signRegistration(randomPrivateKey(), IN_PROCESS_SERVER);
/** A request naming `victim`'s address, signed with another key. */
const forgedFor = (victim: { localpart: string; displayname: string }) => ({
  ...sign(),
  localpart: victim.localpart,
  displayname: `${victim.localpart.slice(2, 6)}-${sign().displayname.slice(5)}`,
});

describe('rate limits', () => {
  const nodes = Array.from({ length: 6 }, sign);

  it('limits each client address, taken from X-Forwarded-For only when the peer is a trusted proxy', async (t) => {
    const gate = await startInProcessGate(t, { settings: limitsOf(3, 0) });
    for (const node of nodes.slice(0, 3)) assert.equal((await post(gate.base, node, '203.0.113.7')).status, 200);
    const limited = await post(gate.base, nodes[3], '203.0.113.7');
    assert.equal(limited.status, 429);
    assert.equal(limited.body.errcode, 'M_LIMIT_EXCEEDED');
    assert.ok(Number(limited.retryAfter) >= 1 && Number(limited.retryAfter) <= 60);
    assert.equal(typeof limited.body.retry_after_ms, 'number');
    assert.equal((await post(gate.base, nodes[3], '198.51.100.1')).status, 200, 'another client is not limited');
    await gate.close();

    const untrusted = await startInProcessGate(t, { settings: limitsOf(3, 0, { 'trusted-proxies': '192.0.2.1' }) });
    for (const [index, node] of nodes.slice(0, 3).entries()) {
      assert.equal((await post(untrusted.base, node, `203.0.113.${index}`)).status, 200);
    }
    assert.equal((await post(untrusted.base, nodes[3], '203.0.113.99')).status, 429, 'a forged X-Forwarded-For does not escape the limit');
    await untrusted.close();
  });

  it('limits each verified node address, and a limit of 0 turns a limit off', async (t) => {
    const gate = await startInProcessGate(t, { settings: limitsOf(0, 2) });
    const node = nodes[0]!;
    await gate.store.nodes.put({
      localpart: node.localpart,
      userId: `@${node.localpart}:${IN_PROCESS_SERVER}`,
      displayname: node.displayname,
      registeredAt: '2026-01-01T00:00:00Z',
    });
    assert.equal((await post(gate.base, node)).status, 409);
    assert.equal((await post(gate.base, node)).status, 409);
    assert.equal((await post(gate.base, node)).status, 429);
    assert.equal((await post(gate.base, nodes[1])).status, 200);
    await gate.close();
  });

  it('never charges a forged request to the node it names: the victim registers at once', async (t) => {
    const gate = await startInProcessGate(t, { settings: limitsOf(1000, 10) });
    const victim = sign();
    for (let i = 0; i < 30; i++) {
      const forged = await post(gate.base, forgedFor(victim), '203.0.113.66');
      assert.equal(forged.status, 403, JSON.stringify(forged.body));
    }
    assert.equal(await gate.store.nodes.getPending(victim.localpart), undefined, 'a forged request touches no store');
    assert.equal(gate.registered.length, 0, 'nor the homeserver');
    const genuine = await post(gate.base, victim, '198.51.100.20');
    assert.equal(genuine.status, 200, JSON.stringify(genuine.body));
    assert.deepEqual(
      gate.registered.map((node) => node.localpart),
      [victim.localpart],
    );
    await gate.close();
  });

  it('limits IPv6 clients per /64 by default, per the configured prefix otherwise', async (t) => {
    const per64 = await startInProcessGate(t, { settings: limitsOf(2, 0) });
    assert.equal((await post(per64.base, sign(), '2001:db8:1:2::1')).status, 200);
    assert.equal((await post(per64.base, sign(), '2001:db8:1:2:ffff::9')).status, 200);
    assert.equal(
      (await post(per64.base, sign(), '2001:db8:1:2:aaaa:bbbb:cccc:dddd')).status,
      429,
      'another address in the same /64 shares the allowance',
    );
    assert.equal((await post(per64.base, sign(), '2001:db8:1:3::1')).status, 200, 'the next /64 has its own');
    assert.equal((await post(per64.base, sign(), '::ffff:203.0.113.5')).status, 200);
    assert.equal((await post(per64.base, sign(), '203.0.113.5')).status, 200);
    assert.equal((await post(per64.base, sign(), '203.0.113.5')).status, 429, 'an IPv4-mapped address is the IPv4 client');
    await per64.close();

    const per128 = await startInProcessGate(t, { settings: limitsOf(2, 0, { 'rate-limit-ipv6-prefix': 128 }) });
    for (const address of ['2001:db8::1', '2001:db8::2', '2001:db8::3'])
      assert.equal((await post(per128.base, sign(), address)).status, 200);
    await per128.close();
  });
});

describe('allow and deny lists after the signatures', () => {
  it('gives a forged request the same answer whether or not its address is on a list', async (t) => {
    const listed = sign();
    const stranger = sign();
    const dir = tempDir('regservice-lists-');
    writeFileSync(join(dir, 'deny'), `${listed.localpart}\n`);
    writeFileSync(join(dir, 'allow'), `${listed.localpart}\n`);
    const answers = new Map<string, string>();
    for (const which of ['deny', 'allow'] as const) {
      const { policy } = loadAddressPolicy(which === 'deny' ? { denyFile: join(dir, 'deny') } : { allowFile: join(dir, 'allow') });
      const gate = await startInProcessGate(t, { settings: limitsOf(0, 0), policy });
      for (const [name, victim] of [
        ['listed', listed],
        ['stranger', stranger],
      ] as const) {
        const forged = await post(gate.base, forgedFor(victim), '203.0.113.1');
        assert.equal(forged.status, 403);
        answers.set(`${which}/${name}`, String(forged.body.error).replace(victim.localpart, '<address>'));
      }
      await gate.close();
    }
    assert.equal(new Set(answers.values()).size, 1, `one answer for every forged request: ${JSON.stringify([...answers])}`);

    const { policy } = loadAddressPolicy({ denyFile: join(dir, 'deny') });
    const gate = await startInProcessGate(t, { settings: limitsOf(0, 0), policy });
    const denied = await post(gate.base, listed);
    assert.equal(denied.status, 403);
    assert.match(String(denied.body.error), /may not register/);
    assert.equal((await post(gate.base, stranger)).status, 200);
    await gate.close();
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('refusal summaries', () => {
  it('counts refusals per outcome and client instead of logging each at info', async (t) => {
    const gate = await startInProcessGate(t, { settings: limitsOf(3, 0) });
    for (let i = 0; i < 4; i++) await post(gate.base, forgedFor(sign()), '203.0.113.9');
    await post(gate.base, { localpart: 12 }, '198.51.100.3');
    const report = gate.refusals.drain();
    assert.deepEqual(report.outcomes, { forbidden: 3, rate_limited: 1, invalid: 1 });
    assert.deepEqual(report.topClients, [
      ['203.0.113.9', 4],
      ['198.51.100.3', 1],
    ]);
    assert.ok(!gate.lines().some((line) => / info registration /.test(line)), 'no info line per refusal');
    assert.equal(gate.lines().filter((line) => / debug registration /.test(line)).length, 5, 'one debug line each');
    await gate.close();
  });
});

describe('the homeserver queue shared among networks', () => {
  const held = (network: string) => (error: unknown) => error instanceof HeldBackError && error.status === 503 && error.network === network;

  it("gives a freed slot to the network with the fewest calls at the homeserver, and makes room in a full queue from a flood's", async () => {
    const limiter = new CallLimiter(2, 3);
    const releases = new Map<string, (() => void)[]>();
    const started: string[] = [];
    const call = (name: string, network: string) =>
      limiter.run(
        () =>
          new Promise<string>((resolve) => {
            started.push(name);
            releases.set(name, [() => resolve(name)]);
          }),
        network,
      );
    const flood = ['a1', 'a2', 'a3', 'a4', 'a5'].map((name) => call(name, '203.0.113.0/24'));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(started, ['a1', 'a2'], 'two at the homeserver, three waiting');
    const pushedOut = assert.rejects(flood[4] as Promise<string>, held('203.0.113.0/24'));
    const quiet = call('b1', '2001:db8:7::/48');
    await pushedOut;
    assert.equal(limiter.queued, 3, "the newcomer took the flood's latest place");
    releases.get('a1')?.[0]?.();
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(started, ['a1', 'a2', 'b1'], 'the freed slot went to the network with none at the homeserver');
    for (const name of ['a2', 'b1']) releases.get(name)?.[0]?.();
    await new Promise((resolve) => setImmediate(resolve));
    for (const name of ['a3', 'a4']) releases.get(name)?.[0]?.();
    assert.deepEqual(await Promise.all([...flood.slice(0, 4), quiet]), ['a1', 'a2', 'a3', 'a4', 'b1']);
  });

  it('refuses a newcomer when the queue is full of networks that wait no more than it would: its own network held back', async () => {
    const limiter = new CallLimiter(1, 1);
    let release: () => void = () => {};
    const first = limiter.run(() => new Promise<void>((resolve) => (release = resolve)), 'x');
    const second = limiter.run(async () => {}, 'y');
    await assert.rejects(
      limiter.run(async () => {}, 'z'),
      held('z'),
    );
    release();
    await Promise.all([first, second]);
    assert.equal(limiter.inFlight, 0);
    assert.equal(limiter.queued, 0);
  });
});

describe('networks', () => {
  it('cuts an address to its network of a prefix, IPv4-mapped IPv6 as IPv4', () => {
    assert.equal(networkOf('203.0.113.77', { ipv4: 24, ipv6: 48 }), '203.0.113.0/24');
    assert.equal(networkOf('203.0.113.77', { ipv4: 32, ipv6: 48 }), '203.0.113.77');
    assert.equal(networkOf('::ffff:203.0.113.77', { ipv4: 24, ipv6: 48 }), '203.0.113.0/24');
    assert.equal(networkOf('2001:db8:1:2:3:4:5:6', { ipv4: 24, ipv6: 56 }), '2001:db8:1::/56');
    assert.equal(networkOf('2001:db8:1:2ff:3:4:5:6', { ipv4: 24, ipv6: 56 }), '2001:db8:1:200::/56');
  });
});

describe('ceilings of new accounts', () => {
  const ceilings = (
    settings: Partial<AccountCeilingSettings>,
    reached: CeilingReached[] = [],
    counter: (limit: LimitSpec) => CeilingCounter = (limit) => createMemoryCeilingCounter(limit),
  ) =>
    createAccountCeilings(
      { ipv4: 0, ipv4Network: 0, ipv6Subscriber: 0, ipv6Site: 0, ipv6Organization: 0, perHour: 0, perDay: 0, ...settings },
      counter,
      (one) => void reached.push(one),
    );
  const limited = (network: string) => (error: unknown) =>
    error instanceof HeldBackError &&
    error.status === 429 &&
    error.network === network &&
    Number(error.headers['Retry-After']) > 60 &&
    Number(error.headers['Retry-After']) <= 3600;

  it('counts an IPv4 client in its address and its /24, and refuses at the first ceiling reached, charging nothing', async () => {
    const reached: CeilingReached[] = [];
    const accounts = ceilings({ ipv4: 2, ipv4Network: 3 }, reached);
    await accounts.charge('203.0.113.1');
    await accounts.charge('203.0.113.1');
    await assert.rejects(accounts.charge('203.0.113.1'), limited('203.0.113.1'));
    await accounts.charge('203.0.113.2');
    await assert.rejects(accounts.charge('203.0.113.3'), limited('203.0.113.0/24'));
    await accounts.charge('198.51.100.1');
    assert.deepEqual(
      reached.map(({ ceiling, network }) => [ceiling, network]),
      [
        ['accounts-ipv4', '203.0.113.1'],
        ['accounts-ipv4-24', '203.0.113.0/24'],
      ],
    );
  });

  it('counts an IPv6 client in its /64, /56 and /48, and gives back what was charged for an account not created', async () => {
    const accounts = ceilings({ ipv6Subscriber: 100, ipv6Site: 2, ipv6Organization: 100 });
    const first = await accounts.charge('2001:db8:1:1::1');
    await accounts.charge('2001:db8:1:2::1');
    await assert.rejects(accounts.charge('2001:db8:1:3::1'), limited('2001:db8:1::/56'));
    await first.refund();
    await accounts.charge('2001:db8:1:3::1');
    await accounts.charge('2001:db8:2::1');
  });

  it('has a ceiling for the whole service, per hour and per day, off by default', async () => {
    const reached: CeilingReached[] = [];
    const accounts = ceilings({ perHour: 2 }, reached);
    await accounts.charge('203.0.113.1');
    await accounts.charge('2001:db8::1');
    await assert.rejects(accounts.charge('198.51.100.7'), limited('service'));
    assert.deepEqual(
      reached.map(({ network }) => network),
      [undefined],
    );
    await ceilings({}).charge('203.0.113.1'); // nothing to count
    const daily = ceilings({ perDay: 1 });
    await daily.charge('203.0.113.1');
    await assert.rejects(
      daily.charge('2001:db8::1'),
      (error: unknown) => error instanceof HeldBackError && error.headers['Retry-After'] === '86400',
    );
  });

  it('counts an IPv4-mapped IPv6 client as its IPv4 address', async () => {
    const accounts = ceilings({ ipv4: 1, ipv6Subscriber: 100 });
    await accounts.charge('::ffff:203.0.113.5');
    await assert.rejects(accounts.charge('203.0.113.5'), limited('203.0.113.5'));
  });

  it('leaves nothing counted when the store cannot count one of the ceilings, and still refuses when it cannot give back', async () => {
    let failing = 'accounts-ipv4-24';
    const flaky = (limit: LimitSpec): CeilingCounter => {
      const real = createMemoryCeilingCounter(limit);
      return {
        take: async (key) => {
          if (failing === limit.name) throw new MatrixError(503, 'M_UNKNOWN', 'the database is restarting');
          return real.take(key);
        },
        giveBack: async (key, window) => {
          if (failing === 'give-back') throw new Error('gone again');
          return real.giveBack(key, window);
        },
      };
    };
    const accounts = ceilings({ ipv4: 3, ipv4Network: 100 }, [], flaky);
    for (let attempt = 0; attempt < 3; attempt += 1)
      await assert.rejects(accounts.charge('203.0.113.1'), (error: unknown) => error instanceof MatrixError && error.status === 503);
    failing = 'none';
    for (let account = 0; account < 3; account += 1) await accounts.charge('203.0.113.1');
    failing = 'give-back';
    await assert.rejects(accounts.charge('203.0.113.1'), limited('203.0.113.1'));
  });
});

describe('ceiling counters in memory', () => {
  it('count only what fits, give back within a window only, and start afresh with the next window', async () => {
    let now = 1_000_000;
    const counter = createMemoryCeilingCounter({ name: 'accounts', points: 2, windowMs: 60_000 }, { now: () => now });
    const first = await counter.take('k');
    const second = await counter.take('k');
    assert.ok(first.taken && second.taken && first.window === second.window && first.window === now + 60_000);
    const refused = await counter.take('k');
    assert.deepEqual(refused, { taken: false, retryAfterMs: 60_000 });
    for (let more = 0; more < 5; more += 1) await counter.take('k');
    await counter.giveBack('k', first.window);
    assert.ok((await counter.take('k')).taken, 'refusals were not counted: one given back is one free');
    now += 60_000;
    const next = await counter.take('k');
    assert.ok(next.taken && next.window === now + 60_000);
    await counter.giveBack('k', first.window); // the old window's: nothing to give back in this one
    assert.ok((await counter.take('k')).taken);
    assert.equal((await counter.take('k')).taken, false, 'still two in the new window');
  });
});
