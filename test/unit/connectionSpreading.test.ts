import { strict as assert } from 'node:assert';
import { describe, it } from '../support/timedTests.js';
import { capturingLogger } from '../support/capturingLogger.js';
import {
  ConnectionSpreading,
  PRIMARY_SATURATED,
  REPORT_FRESH_MS,
  SAMPLE_MS,
  spreadingWanted,
  WORKER_SPARE,
} from '../../src/cluster/connectionSpreading.js';

describe('spreading connections off a saturated primary', () => {
  it('spreads only while the primary is saturated and a worker has time to spare', () => {
    assert.equal(spreadingWanted(1, [0]), true, 'a flood on the primary alone');
    assert.equal(spreadingWanted(PRIMARY_SATURATED, [0.95, WORKER_SPARE]), true, 'one worker of two spare is enough');
    assert.equal(spreadingWanted(1, [0.95, 0.9]), false, 'every process busy: moving connections gains nothing');
    assert.equal(spreadingWanted(0.8, [0]), false, 'the primary keeps up');
    assert.equal(spreadingWanted(1, []), false, 'no worker has reported lately (stopped, stuck or gone)');
  });

  it("samples the primary's load when asked, at most every SAMPLE_MS, forgets workers not heard from or gone, and logs only when it turns", () => {
    let primaryLoad = 1;
    let now = 0;
    const { log, lines } = capturingLogger();
    const spreading = new ConnectionSpreading(log, { load: () => primaryLoad, now: () => now });
    const sample = (): void => {
      now += SAMPLE_MS;
    };
    spreading.workerLoad(0.1, 1);
    sample();
    assert.equal(spreading.closesNow(), false, 'not started: keeps every connection');
    spreading.start();
    spreading.workerGone(1);
    sample();
    assert.equal(spreading.closesNow(), false, 'no worker has reported');

    spreading.workerLoad(0.1, 1);
    now += SAMPLE_MS - 1;
    assert.equal(spreading.closesNow(), false, 'sampled again only after SAMPLE_MS');
    now += 1;
    assert.equal(spreading.closesNow(), true, 'saturated, and worker 1 idles');
    sample();
    assert.equal(spreading.closesNow(), true);
    assert.equal(lines().filter((line) => line.includes('passing refused')).length, 1, 'one line when it turns');

    spreading.workerLoad(0.9, 1);
    sample();
    assert.equal(spreading.closesNow(), false, 'worker 1 got busy');
    spreading.workerLoad(0.1, 1);
    primaryLoad = 0.5;
    sample();
    assert.equal(spreading.closesNow(), false, 'the primary keeps up');

    primaryLoad = 1;
    spreading.workerLoad(0.1, 2);
    sample();
    assert.equal(spreading.closesNow(), true);
    now += REPORT_FRESH_MS;
    sample();
    assert.equal(spreading.closesNow(), false, 'reports too old: the workers may be stopped or stuck');

    spreading.workerLoad(0.1, 3);
    spreading.workerGone(3);
    sample();
    assert.equal(spreading.closesNow(), false, 'a worker that exited counts for nothing');

    spreading.workerLoad(0.1, 4);
    sample();
    assert.equal(spreading.closesNow(), true);
    spreading.stop();
    assert.equal(spreading.closesNow(), false, 'stopped: keeps every connection');
    assert.equal(lines().filter((line) => line.includes('keeping connections again')).length, 2, 'a stop logs nothing');
  });
});
