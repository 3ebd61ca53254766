import { strict as assert } from 'node:assert';
import type { IncomingMessage } from 'node:http';
import { createClientKey } from '../../src/http/clientKey.js';
import { RefusalTally } from '../../src/log/refusalTally.js';
import { RefusalSummaries, type Every } from '../../src/cluster/refusalSummaries.js';
import { capturingLogger } from '../support/capturingLogger.js';
import { describe, it } from '../support/timedTests.js';

/** A clock the test moves: each `tick()` ends one interval. */
function testClock(): { every: Every; tick: () => void; stopped: () => boolean } {
  let tickFn: (() => void) | undefined;
  let stopped = false;
  return {
    every: (_ms, tick) => {
      tickFn = tick;
      return () => void (stopped = true);
    },
    tick: () => tickFn?.(),
    stopped: () => stopped,
  };
}

const CEILING_LINE =
  /warn the service-wide ceiling of new accounts is reached: every new node gets 429 until 2026-12-02T18:00:00\.000Z ceiling=accounts-hour/;
const until = Date.parse('2026-12-02T18:00:00Z');

describe('refusal summaries, on a clock the test controls', () => {
  it('says a service-wide ceiling once per interval however often it refused in it, and not in an interval without one', () => {
    const clock = testClock();
    const { log, lines } = capturingLogger();
    const summaries = new RefusalSummaries(log, 1000, 10, clock.every);
    summaries.ceilingReached('accounts-hour', until);
    summaries.tally.add('ceiling', 'service');
    summaries.ceilingReached('accounts-hour', until);
    summaries.tally.add('ceiling', 'service');
    clock.tick();
    assert.equal(lines().filter((line) => CEILING_LINE.test(line)).length, 1, lines().join('\n'));
    assert.match(lines().join('\n'), /info refused requests interval_s=1 total=2 ceiling=2 top_clients="service=2"/);
    clock.tick();
    assert.equal(lines().length, 2, 'an interval without refusals writes nothing');
    summaries.ceilingReached('accounts-hour', until);
    clock.tick();
    assert.equal(lines().filter((line) => CEILING_LINE.test(line)).length, 2, 'a later interval says it again');
  });

  it('names each ceiling reached, and writes what the last interval holds when stopped', () => {
    const clock = testClock();
    const { log, lines } = capturingLogger();
    const summaries = new RefusalSummaries(log, 60_000, 10, clock.every);
    summaries.ceilingReached('accounts-hour', until);
    summaries.ceilingReached('accounts-day', until + 3_600_000);
    summaries.tally.add('ceiling', 'service', 3);
    summaries.stop();
    assert.ok(clock.stopped());
    const text = lines().join('\n');
    assert.match(text, /ceiling=accounts-hour/);
    assert.match(text, /until 2026-12-02T19:00:00\.000Z ceiling=accounts-day/);
    assert.match(text, /refused requests interval_s=60 total=3 ceiling=3/);
  });
});

describe('a local peer that is not a trusted proxy sending X-Forwarded-For', () => {
  const request = (peer: string, forwardedFor?: string): IncomingMessage =>
    ({
      socket: { remoteAddress: peer },
      headers: forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor },
    }) as IncomingMessage;

  it('is named (loopback, private, unique-local), never a public peer, a trusted proxy or a request without the header', () => {
    const clientOf = createClientKey('172.31.77.10', 64);
    assert.equal(clientOf(request('172.28.56.10', '198.51.100.7')).untrustedForwarder, '172.28.56.10', 'nginx on another subnet');
    assert.equal(clientOf(request('::ffff:10.1.2.3', '198.51.100.7')).untrustedForwarder, '10.1.2.3');
    assert.equal(clientOf(request('fd00::5', '198.51.100.7')).untrustedForwarder, 'fd00::5');
    assert.equal(clientOf(request('203.0.113.9', '198.51.100.7')).untrustedForwarder, undefined, 'a public peer can send it at will');
    assert.equal(clientOf(request('172.31.77.10', '198.51.100.7')).untrustedForwarder, undefined, 'the trusted proxy');
    assert.equal(clientOf(request('127.0.0.1')).untrustedForwarder, undefined, 'no header');
  });

  it('is warned of once per interval per peer, worded for a proxy the operator may have forgotten to trust', () => {
    const clock = testClock();
    const { log, lines } = capturingLogger();
    const summaries = new RefusalSummaries(log, 1000, 10, clock.every);
    const worker = new RefusalTally();
    for (let index = 0; index < 70; index += 1) worker.untrustedForwarder('172.28.56.10');
    summaries.tally.merge(worker.drain());
    clock.tick();
    const warnings = lines().filter((line) => line.includes('X-Forwarded-For'));
    assert.equal(warnings.length, 1, lines().join('\n'));
    assert.match(
      warnings[0] ?? '',
      /warn requests from 172\.28\.56\.10, which is not in --trusted-proxies, carry X-Forwarded-For: it is not believed.* If 172\.28\.56\.10 is your proxy, add it to --trusted-proxies requests=70 interval_s=1/,
    );
    clock.tick();
    assert.equal(lines().filter((line) => line.includes('X-Forwarded-For')).length, 1, 'a quiet interval says nothing');
  });
});
