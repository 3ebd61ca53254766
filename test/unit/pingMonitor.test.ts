import { strict as assert } from 'node:assert';
import { describe, it, mock } from '../support/timedTests.js';
import type { PingResult } from '../../src/homeserver/appservicePing.js';
import { PING_INTERVAL_MS, PING_RETRY_MS, startPingMonitor } from '../../src/homeserver/pingMonitor.js';
import { capturingLogger } from '../support/capturingLogger.js';

const down: PingResult = { ok: false, reason: 'cannot reach the homeserver at http://127.0.0.1:8008: ECONNREFUSED' };
const badToken: PingResult = { ok: false, reason: 'M_UNKNOWN_TOKEN Unrecognised access token' };
const up: PingResult = { ok: true, durationMs: 3 };

/** Lets the monitor's promise chain run after a timer fired. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('the application-service ping, kept up', () => {
  it('pings again (sooner after a failure), logs only when the result changes, and keeps the last result for the metrics', async (t) => {
    mock.timers.enable({ apis: ['setTimeout'] });
    t.after(() => mock.timers.reset());
    const answers = [down, down, up, up, badToken, badToken, up];
    let asked = 0;
    const { log, lines } = capturingLogger();
    const seen: boolean[] = [];
    let clock = 1_000_000;
    const monitor = startPingMonitor({
      ping: () => Promise.resolve(answers[asked++] ?? up),
      log,
      now: () => clock,
      onResult: (state) => seen.push(state.result.ok),
    });
    await monitor.first;
    for (const wait of [PING_RETRY_MS, PING_RETRY_MS, PING_INTERVAL_MS, PING_INTERVAL_MS, PING_RETRY_MS, PING_RETRY_MS]) {
      clock += wait;
      mock.timers.tick(wait);
      await settle();
    }
    monitor.stop();
    assert.equal(asked, 7, 'every ping was made at its interval');
    assert.deepEqual(seen, [false, false, true, true, false, false, true]);
    const pingLines = lines().filter((line) => line.includes('application-service ping'));
    assert.equal(pingLines.length, 4, pingLines.join('\n'));
    assert.match(pingLines[0] ?? '', /warn application-service ping failed: cannot reach the homeserver at http:\/\/127\.0\.0\.1:8008/);
    assert.match(pingLines[1] ?? '', /info application-service ping succeeded again: the homeserver reached us/);
    assert.match(pingLines[2] ?? '', /warn application-service ping failed: M_UNKNOWN_TOKEN/);
    assert.match(pingLines[3] ?? '', /succeeded again/);
    assert.deepEqual(monitor.last(), { result: up, at: clock });
  });
});
