import { strict as assert } from 'node:assert';
import type { NewNode, RegisteredUser, Registrar } from '../../src/homeserver/registrar.js';
import { randomPrivateKey, signRegistration } from '../../src/protocol/signRegistration.js';
import { IN_PROCESS_SERVER, startInProcessGate, type InProcessGate } from '../support/inProcessGate.js';
import { MAX_IN_PROGRESS_PER_CONNECTION } from '../../src/http/connectionRequests.js';
import { waitFor } from '../support/ports.js';
import { postText, RawConnection } from '../support/rawHttp.js';
import type { Scope } from '../support/scope.js';
import { describe, it } from '../support/timedTests.js';

const fresh = () => signRegistration(randomPrivateKey(), IN_PROCESS_SERVER);
const userIdOf = (body: string): unknown => (JSON.parse(body) as { user_id?: unknown }).user_id;

/** A homeserver stand-in that holds every registration until the test releases them all. */
function heldRegistrar(): Registrar & { readonly held: NewNode[]; release(): void } {
  const waiting: (() => void)[] = [];
  const held: NewNode[] = [];
  let released = false;
  return {
    held,
    release() {
      released = true;
      for (const go of waiting.splice(0)) go();
    },
    register: async (node: NewNode): Promise<RegisteredUser> => {
      held.push(node);
      if (!released) await new Promise<void>((resolve) => waiting.push(resolve));
      return { userId: `@${node.localpart}:${IN_PROCESS_SERVER}`, homeServer: IN_PROCESS_SERVER };
    },
  };
}

async function openTo(t: Scope, gate: InProcessGate): Promise<RawConnection> {
  const connection = await RawConnection.open(Number(new URL(gate.base).port));
  t.after(() => connection.destroy());
  return connection;
}

describe('one connection, many requests: every request gets its Matrix answer, in order', () => {
  it('answers six pipelined registrations, each with its own user_id, in the order they were sent', async (t) => {
    const gate = await startInProcessGate(t);
    const nodes = Array.from({ length: 6 }, fresh);
    const connection = await openTo(t, gate);
    connection.write(nodes.map((node) => postText(`${new URL(gate.base).pathname}/register`, node)).join(''));
    const answers = await connection.waitFor(nodes.length, 20_000);
    assert.deepEqual(
      answers.map((answer) => [answer.status, userIdOf(answer.body)]),
      nodes.map((node) => [200, `@${node.localpart}:${IN_PROCESS_SERVER}`]),
    );
  });

  it("closes a refusal's connection only when nothing else is in hand on it: no answer queued behind it is lost", async (t) => {
    const registrar = heldRegistrar();
    const gate = await startInProcessGate(t, { registrar, closeAfterRefusal: () => true });
    const path = `${new URL(gate.base).pathname}/register`;
    const forged = { ...fresh(), password: fresh().password };

    const alone = await openTo(t, gate);
    alone.write(postText(path, forged));
    const [refusal] = await alone.waitFor(1, 10_000);
    assert.equal(refusal?.status, 403);
    assert.equal(refusal?.headers.connection, 'close', 'a refusal with nothing behind it passes the client on');

    const node = fresh();
    const pipelined = await openTo(t, gate);
    pipelined.write(postText(path, node) + postText(path, forged) + postText(path, forged));
    await waitFor('the registration at the homeserver', async () => (registrar.held.length === 1 ? true : undefined), 10_000);
    registrar.release();
    const answers = await pipelined.waitFor(3, 10_000);
    assert.deepEqual(
      answers.map((answer) => answer.status),
      [200, 403, 403],
      'the registration and both refusals are answered, in order',
    );
    assert.equal(answers[0]?.headers.connection === 'close', false, "a registration's connection stays");
  });

  it(`hands the primary at most ${MAX_IN_PROGRESS_PER_CONNECTION} requests of one connection at once; the rest wait their turn`, async (t) => {
    const registrar = heldRegistrar();
    const gate = await startInProcessGate(t, { registrar });
    const path = `${new URL(gate.base).pathname}/register`;
    const nodes = Array.from({ length: 10 }, fresh);
    const pipelined = await openTo(t, gate);
    pipelined.write(nodes.map((node) => postText(path, node)).join(''));
    await waitFor(
      'the first requests at the homeserver',
      async () => (registrar.held.length >= MAX_IN_PROGRESS_PER_CONNECTION ? true : undefined),
      10_000,
    );
    // A registration sent on another connection after all ten reaches the homeserver: by then the ten were read.
    const other = fresh();
    const second = await openTo(t, gate);
    second.write(postText(path, other));
    await waitFor(
      'the other connection at the homeserver',
      async () => (registrar.held.some((node) => node.localpart === other.localpart) ? true : undefined),
      10_000,
    );
    assert.equal(
      registrar.held.length,
      MAX_IN_PROGRESS_PER_CONNECTION + 1,
      'the pipelined connection has no more than its share at the homeserver',
    );
    registrar.release();
    const answers = await pipelined.waitFor(nodes.length, 20_000);
    assert.deepEqual(
      answers.map((answer) => [answer.status, userIdOf(answer.body)]),
      nodes.map((node) => [200, `@${node.localpart}:${IN_PROCESS_SERVER}`]),
    );
    assert.equal((await second.waitFor(1, 10_000))[0]?.status, 200);
  });

  it('never handles the requests still waiting on a connection the client reset', async (t) => {
    const registrar = heldRegistrar();
    const gate = await startInProcessGate(t, { registrar });
    const path = `${new URL(gate.base).pathname}/register`;
    const pipelined = await openTo(t, gate);
    pipelined.write(Array.from({ length: MAX_IN_PROGRESS_PER_CONNECTION + 2 }, () => postText(path, fresh())).join(''));
    await waitFor(
      'the first requests at the homeserver',
      async () => (registrar.held.length >= MAX_IN_PROGRESS_PER_CONNECTION ? true : undefined),
      10_000,
    );
    pipelined.reset();
    await waitFor('the gate to see the connection closed', async () => ((await gate.connections()) === 0 ? true : undefined), 10_000);
    registrar.release();
    // A registration on another connection, sent after the close, reaches the homeserver: the two left waiting did not.
    const other = fresh();
    const second = await openTo(t, gate);
    second.write(postText(path, other));
    assert.equal((await second.waitFor(1, 10_000))[0]?.status, 200);
    assert.equal(registrar.held.length, MAX_IN_PROGRESS_PER_CONNECTION + 1, 'only the requests already handled, and the other one');
  });

  it('answers a request the parser refused after a valid one only after that one: its 200 comes first, then the 400, then the close', async (t) => {
    const gate = await startInProcessGate(t);
    const node = fresh();
    const connection = await openTo(t, gate);
    connection.write(`${postText(`${new URL(gate.base).pathname}/register`, node)}BROKEN\x01 / HTTP/1.1\r\n\r\n`);
    const answers = await connection.waitFor(2, 20_000);
    assert.deepEqual(
      answers.map((answer) => answer.status),
      [200, 400],
    );
    assert.equal(userIdOf(answers[0]?.body ?? '{}'), `@${node.localpart}:${IN_PROCESS_SERVER}`);
    assert.equal((JSON.parse(answers[1]?.body ?? '{}') as { errcode?: string }).errcode, 'M_NOT_JSON');
    await connection.waitFor(3, 10_000);
    assert.ok(connection.closed, 'the connection is closed after the error');
  });

  it('answers a registration before the error of the request behind it that never arrives whole, then closes', async (t) => {
    const gate = await startInProcessGate(t);
    const node = fresh();
    const connection = await openTo(t, gate);
    const path = `${new URL(gate.base).pathname}/register`;
    // The second request's body is cut short by the client's end: it will never come whole.
    connection.write(`${postText(path, node)}POST ${path} HTTP/1.1\r\nhost: gate.test\r\ncontent-length: 100\r\n\r\n{"local`);
    connection.halfClose();
    const answers = await connection.waitFor(2, 20_000);
    assert.deepEqual(
      answers.map((answer) => answer.status),
      [200, 400],
    );
    assert.equal(userIdOf(answers[0]?.body ?? '{}'), `@${node.localpart}:${IN_PROCESS_SERVER}`);
    await connection.waitFor(3, 10_000);
    assert.ok(connection.closed, 'the connection is closed after the error');
  });

  it('answers a client that half-closes after a complete request, then closes', async (t) => {
    const gate = await startInProcessGate(t);
    const node = fresh();
    const connection = await openTo(t, gate);
    connection.write(postText(`${new URL(gate.base).pathname}/register`, node));
    connection.halfClose();
    const answers = await connection.waitFor(1, 20_000);
    assert.equal(answers[0]?.status, 200);
    assert.equal(userIdOf(answers[0]?.body ?? '{}'), `@${node.localpart}:${IN_PROCESS_SERVER}`);
    await connection.waitFor(2, 10_000);
    assert.ok(connection.closed);
    assert.deepEqual(await gate.store.nodes.listPending(), [], 'the answer was delivered: nothing left to answer again');
  });
});

describe('answers that are Matrix JSON even where Node has its own', () => {
  for (const [what, request, status, errcode] of [
    ['HTTP/1.1 without Host', 'POST /regapp/1/register HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}', 400, 'M_UNRECOGNIZED'],
    [
      'an Expect header it cannot meet',
      'POST /regapp/1/register HTTP/1.1\r\nhost: gate.test\r\nexpect: bogus\r\ncontent-length: 2\r\n\r\n{}',
      417,
      'M_UNKNOWN',
    ],
  ] as const) {
    it(`${what}: ${status} ${errcode}`, async (t) => {
      const gate = await startInProcessGate(t);
      assert.equal(new URL(gate.base).pathname, '/regapp/1');
      const connection = await openTo(t, gate);
      connection.write(request);
      const [answer] = await connection.waitFor(1, 10_000);
      assert.equal(answer?.status, status);
      assert.match(answer?.headers['content-type'] ?? '', /^application\/json/);
      assert.equal((JSON.parse(answer?.body ?? '{}') as { errcode?: string }).errcode, errcode);
    });
  }
});
