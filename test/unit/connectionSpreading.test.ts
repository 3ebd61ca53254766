import { strict as assert } from 'node:assert';
import { describe, it } from '../support/timedTests.js';
import { PRIMARY_SATURATED, spreadingWanted, WORKER_SPARE } from '../../src/cluster/connectionSpreading.js';

describe('spreading connections off a saturated primary', () => {
  it('spreads only while the primary is saturated and a worker has time to spare', () => {
    assert.equal(spreadingWanted(1, [0]), true, 'a flood on the primary alone');
    assert.equal(spreadingWanted(PRIMARY_SATURATED, [0.95, WORKER_SPARE]), true, 'one worker of two spare is enough');
    assert.equal(spreadingWanted(1, [0.95, 0.9]), false, 'every process busy: moving connections gains nothing');
    assert.equal(spreadingWanted(0.8, [0]), false, 'the primary keeps up');
    assert.equal(spreadingWanted(1, []), false, 'no worker has reported lately (stopped, stuck or gone)');
  });
});
