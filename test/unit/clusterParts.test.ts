import { randomPrivateKey, signRegistration } from '../../src/protocol/signRegistration.js';
import { strict as assert } from 'node:assert';
import { describe, it } from '../support/timedTests.js';
import cluster from 'node:cluster';
import { IpcPeer, type Channel, type Handlers } from '../../src/cluster/ipc.js';
import { workerChannel } from '../../src/cluster/supervisor.js';
import { primaryApiHandlers, primaryApiOver, type PrimaryApi } from '../../src/cluster/primaryApi.js';
import proxyaddr from 'proxy-addr';
import { clientAddressOf, clientKeyOf } from '../../src/http/clientKey.js';
import { networkOf, queueNetworkOf } from '../../src/access/networks.js';
import { RefusalTally, refusalSummaryFields } from '../../src/log/refusalTally.js';
import { LineBudget } from '../../src/log/lineBudget.js';
import { HomeserverError, MatrixError, retryLater } from '../../src/protocol/matrixError.js';
import { createMemoryRateLimiter } from '../../src/store/memoryRateLimiter.js';
import { waitFor } from '../support/ports.js';

/** A worker that says hello and exits at once, before the primary can answer. */
const EXITING_FIXTURE = new URL('../support/exitingWorker.mjs', import.meta.url).pathname;

/** Two peers joined like a primary and a worker, messages passing through JSON as on the real channel. */
function connectedPeers(a: Handlers, b: Handlers): { left: IpcPeer; right: IpcPeer; packets: () => number } {
  let packets = 0;
  const listeners: { left?: (message: unknown) => void; right?: (message: unknown) => void } = {};
  const channel = (to: 'left' | 'right', from: 'left' | 'right'): Channel => ({
    send(packet, done) {
      packets += 1;
      const copy: unknown = JSON.parse(JSON.stringify(packet));
      setImmediate(() => {
        listeners[to]?.(copy);
        done?.(null);
      });
    },
    onMessage: (listener) => (listeners[from] = listener),
  });
  const noteErrors: unknown[] = [];
  const left = new IpcPeer(channel('right', 'left'), a, (_method, error) => noteErrors.push(error));
  const right = new IpcPeer(channel('left', 'right'), b, (_method, error) => noteErrors.push(error));
  return { left, right, packets: () => packets };
}

describe('IPC between the primary and a worker', () => {
  it('answers requests, carries Matrix errors whole, and sends what one turn asks as one packet', async () => {
    const reports: unknown[] = [];
    const loads: [number, number][] = [];
    const [good, down] = [signRegistration(randomPrivateKey(), 'hs'), signRegistration(randomPrivateKey(), 'hs')];
    const primary: PrimaryApi = {
      limitClient: async (key) => {
        if (key === 'flooder') throw retryLater(429, 'M_LIMIT_EXCEEDED', 'too many', 2500);
      },
      register: async (node) => {
        if (node.localpart === down.localpart) throw new HomeserverError(504, 'M_UNKNOWN', 'homeserver failed: no answer');
        return { userId: `@${node.localpart}:hs`, homeServer: 'hs' };
      },
      delivered: () => {},
      transaction: async () => 'processed',
      queryUser: async (userId) => userId === '@known:hs',
      forget: async () => 0,
      reportRefusals: (report) => reports.push(report),
      reportLoad: (load, worker) => loads.push([load, worker]),
      log: () => {},
    };
    const { left, right, packets } = connectedPeers(primaryApiHandlers(primary, 1), {});
    void left;
    const api = primaryApiOver(right);
    const before = packets();
    const [user, known, unknown, outcome] = await Promise.all([
      api.register(good, { client: '203.0.113.9', address: '203.0.113.9', elapsedMs: 1, worker: 1 }),
      api.queryUser('@known:hs'),
      api.queryUser('@other:hs'),
      api.transaction('t1', { events: [] }),
    ]);
    assert.deepEqual(user, { userId: `@${good.localpart}:hs`, homeServer: 'hs' });
    assert.equal(known, true);
    assert.equal(unknown, false);
    assert.equal(outcome, 'processed');
    assert.equal(packets() - before, 2, 'four requests in one packet, four replies in another');

    await assert.rejects(api.limitClient('flooder'), (error: unknown) => {
      assert.ok(error instanceof MatrixError);
      assert.equal(error.status, 429);
      assert.equal(error.errcode, 'M_LIMIT_EXCEEDED');
      assert.equal(error.headers['Retry-After'], '3');
      assert.deepEqual(error.toJSON(), { retry_after_ms: 2500, errcode: 'M_LIMIT_EXCEEDED', error: 'too many' });
      return true;
    });
    await api.limitClient('anyone');
    await assert.rejects(
      api.register(down, { client: '203.0.113.9', address: '203.0.113.9', elapsedMs: 1, worker: 1 }),
      (error: unknown) => error instanceof HomeserverError && error.status === 504,
    );

    api.reportRefusals({ outcomes: { forbidden: 2 }, topClients: [['a', 2]] });
    await waitFor('the report to arrive', async () => (reports.length > 0 ? true : undefined), 5000);
    assert.deepEqual(reports, [
      { outcomes: { forbidden: 2 }, topClients: [['a', 2]], unnamedClients: 0, unlogged: 0, untrustedForwarders: [] },
    ]);

    // The worker the supervisor knows it as, whatever it says; a load that is no share counts as busy.
    api.reportLoad(0.25, 7);
    api.reportLoad(Number.NaN, 7);
    await waitFor('the loads to arrive', async () => (loads.length === 2 ? true : undefined), 5000);
    assert.deepEqual(loads, [
      [0.25, 1],
      [1, 1],
    ]);
  });

  it('turns an unexpected error into a plain error and fails every open request when the other side is gone', async () => {
    let release: () => void = () => {};
    const { right } = connectedPeers(
      {
        boom: async () => {
          throw new TypeError('exploded');
        },
        hang: () => new Promise<void>((resolve) => (release = resolve)),
      },
      {},
    );
    await assert.rejects(
      right.request('boom', []),
      (error: unknown) => !(error instanceof MatrixError) && (error as Error).message === 'exploded',
    );
    await assert.rejects(right.request('nothing', []), /no such call: nothing/);
    const open = right.request('hang', []);
    await new Promise((resolve) => setTimeout(resolve, 10));
    right.close('worker 3 exited');
    await assert.rejects(open, /worker 3 exited/);
    await assert.rejects(right.request('boom', []), /worker 3 exited/);
    release();
  });

  it('ends the peer, never the process, when a send fails through its callback (the other process just went away)', async () => {
    let closedFor: string | undefined;
    const channel: Channel = {
      send(_packet, done) {
        setImmediate(() => done(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' })));
      },
      onMessage: () => {},
    };
    const peer = new IpcPeer(
      channel,
      {},
      () => {},
      (reason) => (closedFor = reason),
    );
    const open = peer.request('anything', []);
    peer.notify('note', []);
    await assert.rejects(open, /the other process cannot be reached: write EPIPE/);
    assert.equal(peer.closed, true);
    assert.match(closedFor ?? '', /cannot be reached: write EPIPE/, 'told, so that the process can end (and be replaced)');
    await assert.rejects(peer.request('later', []), /cannot be reached/);
    await peer.flushNow();
  });

  it('fails alone a request it cannot serialize (a send that throws at once), sends the rest of its batch and stays open', async () => {
    // Node serializes a message before it writes it: JSON.stringify overflows on 20,000 nested arrays.
    let deep: unknown[] = [];
    for (let depth = 0; depth < 20_000; depth++) deep = [deep];
    const packets: { regservice: { method?: string }[] }[] = [];
    const channel: Channel = {
      send(packet, done) {
        packets.push(JSON.parse(JSON.stringify(packet)) as { regservice: { method?: string }[] });
        setImmediate(() => done(null));
      },
      onMessage: () => {},
    };
    const noteErrors: [string, unknown][] = [];
    let closed = false;
    const peer = new IpcPeer(
      channel,
      {},
      (method, error) => noteErrors.push([method, error]),
      () => (closed = true),
    );
    void peer.request('first', [1]);
    const bad = peer.request('deep', [deep]);
    void peer.request('last', [2]);
    peer.notify('deepNote', [deep]);
    await assert.rejects(bad, /deep could not be sent to the other process: Maximum call stack size exceeded/);
    await peer.flushNow();
    assert.deepEqual(
      packets.flatMap((packet) => packet.regservice.map((envelope) => envelope.method)),
      ['first', 'last'],
      'the rest of the batch went out',
    );
    assert.deepEqual(
      noteErrors.map(([method]) => method),
      ['deepNote'],
    );
    assert.equal(closed, false);
    assert.equal(peer.closed, false, 'both processes live on');
  });

  it('survives a note and a reply to a real worker whose channel has just closed', async () => {
    // The order the primary met on Node 24.22 at start-up: the worker is gone, its channel closed, and a note (start,
    // stop) or a reply is still on its way to it. A send without a callback would emit 'error' on the Worker here.
    cluster.setupPrimary({ exec: EXITING_FIXTURE, args: [], serialization: 'json' });
    for (let round = 0; round < 5; round++) {
      const worker = cluster.fork();
      const peer = new IpcPeer(workerChannel(worker), { hello: () => 'welcome' }, () => {});
      const hello = new Promise<void>((resolve) => worker.once('message', () => resolve()));
      await hello;
      await new Promise<void>((resolve) => (worker.isDead() ? resolve() : worker.once('exit', () => resolve())));
      peer.notify('start', [{}]);
      await waitFor('the failed send to close the peer', async () => (peer.closed ? true : undefined), 5000);
    }
  });
});

describe('client keys for rate limits', () => {
  it('keeps IPv4 addresses, maps IPv4-mapped IPv6 to IPv4, and cuts IPv6 to the prefix', () => {
    assert.equal(clientKeyOf('203.0.113.7', 64), '203.0.113.7');
    assert.equal(clientKeyOf('::ffff:203.0.113.7', 64), '203.0.113.7');
    assert.equal(clientKeyOf('2001:db8:1:2:3:4:5:6', 64), '2001:db8:1:2::/64');
    assert.equal(clientKeyOf('2001:db8:1:2:ffff:ffff:ffff:ffff', 64), '2001:db8:1:2::/64');
    assert.equal(clientKeyOf('2001:db8:1:2:3:4:5:6', 48), '2001:db8:1::/48');
    assert.equal(clientKeyOf('2001:db8:1:2ff:3:4:5:6', 56), '2001:db8:1:200::/56');
    assert.equal(clientKeyOf('2001:db8:1:2:3:4:5:6', 128), '2001:db8:1:2:3:4:5:6');
    assert.equal(clientKeyOf('2001:DB8::1', 128), '2001:db8::1');
  });

  it('takes the client from X-Forwarded-For only behind a trusted proxy, and only a valid IP address', () => {
    const trust = proxyaddr.compile(['loopback', '10.0.0.0/8']);
    const of = (peer: string, header: string) => clientAddressOf(peer, header.split(',').reverse(), trust);
    assert.equal(of('198.51.100.9', '203.0.113.7'), '198.51.100.9', 'from anyone else the header is ignored');
    assert.equal(of('127.0.0.1', '203.0.113.7'), '203.0.113.7');
    assert.equal(of('127.0.0.1', '2001:db8::7'), '2001:db8::7');
    assert.equal(of('127.0.0.1', 'not-an-address'), '127.0.0.1', "a non-IP entry: the proxy's own address");
    assert.equal(of('127.0.0.1', 'x'.repeat(300)), '127.0.0.1');
    assert.equal(of('127.0.0.1', '203.0.113.7:5555'), '127.0.0.1', 'an address with a port is not an IP address');
    assert.equal(of('127.0.0.1', '192.0.2.66, 203.0.113.7'), '203.0.113.7', "the right-most untrusted entry, not a client's own");
    assert.equal(of('127.0.0.1', '198.51.100.1, 10.0.0.2'), '198.51.100.1', 'through a chain of trusted proxies');
    assert.equal(of('127.0.0.1', 'junk, 10.0.0.2'), '10.0.0.2', 'the last trusted proxy reached');
    assert.equal(of('127.0.0.1', '10.0.0.3, 10.0.0.2'), '10.0.0.3', 'every hop trusted: the left-most');
  });

  it('drops an IPv6 zone id, whatever its text, from the client, its key and its networks: one client, not one per zone', () => {
    const trust = proxyaddr.compile(['loopback']);
    const of = (header: string) => clientAddressOf('127.0.0.1', [header], trust);
    for (const zoned of ['2001:db8:1::9%a.b', '2001:db8:1::9%a-c', '2001:db8:1::9%x:y', '2001:db8:1::9%eth0', '2001:DB8:1::9']) {
      assert.equal(of(zoned), '2001:db8:1::9', zoned);
      assert.equal(clientKeyOf(zoned, 128), '2001:db8:1::9', `${zoned} at --rate-limit-ipv6-prefix 128`);
      assert.equal(clientKeyOf(zoned, 64), '2001:db8:1::/64');
      assert.equal(networkOf(zoned, { ipv4: 24, ipv6: 56 }), '2001:db8:1::/56');
      assert.equal(queueNetworkOf(zoned), '2001:db8:1::/48');
    }
    assert.equal(of('203.0.113.7%eth0'), '127.0.0.1', 'an IPv4 address has no zone: not an address');
    assert.equal(of('::ffff:203.0.113.7'), '203.0.113.7', 'IPv4-mapped counts as IPv4');
    assert.equal(of('1.2.3'), '127.0.0.1', 'only the dotted form of IPv4');
  });
});

describe('refusal tally', () => {
  it('counts per outcome and client, names the top clients, and starts afresh when drained', () => {
    const tally = new RefusalTally();
    assert.equal(tally.empty, true);
    for (let i = 0; i < 5; i++) tally.add('forbidden', '203.0.113.1');
    tally.add('invalid', '198.51.100.2');
    tally.add('rate_limited', '198.51.100.2', 2);
    const report = tally.drain(1);
    assert.deepEqual(report.outcomes, { forbidden: 5, invalid: 1, rate_limited: 2 });
    assert.deepEqual(report.topClients, [
      ['203.0.113.1', 5],
      ['others', 3],
    ]);
    assert.equal(tally.empty, true);

    const primary = new RefusalTally();
    primary.merge(report);
    primary.merge({ outcomes: { forbidden: 1 }, topClients: [['203.0.113.1', 1]] });
    const fields = refusalSummaryFields(primary.drain(), 10_000);
    assert.deepEqual(fields, { interval_s: 10, total: 9, forbidden: 6, invalid: 1, rate_limited: 2, top_clients: '203.0.113.1=6' });
  });

  it('escapes what a reader of top_clients would split on', () => {
    const tally = new RefusalTally();
    tally.add('forbidden', 'a=b,c d');
    assert.equal(refusalSummaryFields(tally.drain(), 10_000).top_clients, 'a%3db%2cc%20d=1');
  });

  it('remembers a bounded number of clients: a flood from ever-new addresses is counted, not stored', () => {
    const tally = new RefusalTally();
    for (let i = 0; i < 25_000; i++) tally.add('forbidden', `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`);
    const report = tally.drain(3);
    assert.equal(report.outcomes.forbidden, 25_000);
    assert.equal(report.topClients.length, 4);
    assert.deepEqual(report.topClients.at(-1), ['others', 25_000 - 3]);
  });
});

describe('in-memory rate limiter', () => {
  it("allows a minute's points per key from its first request, says when to retry, then starts afresh", async () => {
    let now = 1_000_000;
    const limiter = createMemoryRateLimiter(3, { now: () => now });
    for (let i = 0; i < 3; i++) assert.deepEqual(await limiter.consume('a'), { allowed: true });
    now += 20_000;
    const refused = await limiter.consume('a');
    assert.equal(refused.allowed, false);
    assert.equal(refused.allowed === false && refused.retryAfterMs, 40_000);
    assert.deepEqual(await limiter.consume('b'), { allowed: true }, 'each key has its own allowance');
    now += 40_001;
    assert.deepEqual(await limiter.consume('a'), { allowed: true }, 'a new window');
  });

  it('remembers at most maxKeys keys: the least recently seen is forgotten, memory stays bounded', async () => {
    const limiter = createMemoryRateLimiter(1, { maxKeys: 100 });
    assert.deepEqual(await limiter.consume('first'), { allowed: true });
    assert.equal((await limiter.consume('first')).allowed, false);
    for (let i = 0; i < 100; i++) await limiter.consume(`flood-${i}`);
    assert.deepEqual(await limiter.consume('first'), { allowed: true }, 'evicted, so a fresh allowance');
  });
});

describe('refusal lines a second', () => {
  it('allows its share, one second at most at once, and counts the rest in the summary', () => {
    let now = 0;
    const budget = new LineBudget(10 / 3, () => now);
    const first = Array.from({ length: 10 }, () => budget.take()).filter(Boolean).length;
    assert.equal(first, 3, "a second's worth at most at once");
    now += 3000;
    assert.equal(Array.from({ length: 20 }, () => budget.take()).filter(Boolean).length, 3, "no more saved up than a second's");
    const tally = new RefusalTally(2);
    for (let i = 0; i < 5; i++) {
      tally.add('forbidden', '203.0.113.9');
      tally.lineAllowed();
    }
    const fields = refusalSummaryFields(tally.drain(), 1000);
    assert.equal(fields.unlogged, 3);
    assert.equal(fields.total, 5);
  });
});
