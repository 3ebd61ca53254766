import { strict as assert } from 'node:assert';
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
