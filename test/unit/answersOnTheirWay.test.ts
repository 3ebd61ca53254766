import { strict as assert } from 'node:assert';
import { describe, it } from '../support/timedTests.js';
import { AnswersOnTheirWay } from '../../src/cluster/answersOnTheirWay.js';

/** Whether `promise` settles within `ms`. */
const settlesWithin = (promise: Promise<unknown>, ms: number): Promise<boolean> =>
  Promise.race([promise.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms))]);

/** The wait for the node's answers on their way, which there must be. */
const waitFor = (answers: AnswersOnTheirWay, localpart: string, maxMs: number): Promise<void> => {
  const wait = answers.settled(localpart, maxMs);
  assert.ok(wait !== undefined, `an answer to ${localpart} is on its way`);
  return wait;
};

describe('answers on their way to their nodes', () => {
  it('a node with no answer on its way does not wait', () => {
    const answers = new AnswersOnTheirWay(() => assert.fail('nothing reached'));
    assert.equal(answers.settled('0xaa', 10_000), undefined);
  });

  it('a waiting request learns the answer reached the node as soon as its worker says so, and the node is marked once', async () => {
    const reached: string[] = [];
    const answers = new AnswersOnTheirWay((localpart) => reached.push(localpart));
    answers.sent('0xaa', 1);
    answers.sent('0xaa', 2);
    const first = waitFor(answers, '0xaa', 10_000);
    const second = waitFor(answers, '0xaa', 10_000);
    assert.equal(await settlesWithin(first, 20), false);
    answers.settle('0xaa', true, 3); // not a worker delivering it
    assert.equal(await settlesWithin(first, 20), false);
    answers.settle('0xaa', true, 2);
    assert.equal(await settlesWithin(Promise.all([first, second]), 5), true);
    assert.deepEqual(reached, ['0xaa']);
    answers.settle('0xaa', true, 1); // already counted
    assert.deepEqual(reached, ['0xaa']);
  });

  it('waits until every answer on its way is lost, by its report or by its worker exiting; then nothing was reached', async () => {
    const reached: string[] = [];
    const answers = new AnswersOnTheirWay((localpart) => reached.push(localpart));
    answers.sent('0xbb', 1);
    answers.sent('0xbb', 2);
    answers.sent('0xcc', 1);
    const bb = waitFor(answers, '0xbb', 10_000);
    const cc = waitFor(answers, '0xcc', 10_000);
    answers.settle('0xbb', false, 1);
    assert.equal(await settlesWithin(bb, 20), false, "worker 2's answer is still on its way");
    answers.workerGone(2);
    answers.workerGone(1);
    assert.equal(await settlesWithin(Promise.all([bb, cc]), 5), true);
    answers.sent('0xdd', 1); // handed to a worker already gone: on its way to nobody
    assert.equal(answers.settled('0xdd', 10_000), undefined);
    assert.deepEqual(reached, []);
  });

  it('stops waiting after its bound, and a later report still counts', async () => {
    const reached: string[] = [];
    const answers = new AnswersOnTheirWay((localpart) => reached.push(localpart));
    answers.sent('0xee', 1);
    const started = performance.now();
    await waitFor(answers, '0xee', 60);
    assert.ok(performance.now() - started >= 55, 'waited for its bound');
    answers.settle('0xee', true, 1);
    assert.deepEqual(reached, ['0xee']);
  });
});
