import { strict as assert } from 'node:assert';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from '../support/timedTests.js';
import { createServer } from 'node:http';
import { createRequestListener } from '../../src/http/app.js';
import { registerRoute } from '../../src/http/registerRoute.js';
import { createAddressRecovery } from '../../src/protocol/addressRecovery.js';
import { createRegistrationVerifier } from '../../src/protocol/registrationRequest.js';
import { HomeserverError, MatrixError } from '../../src/protocol/matrixError.js';
import { homeserverFailed } from '../../src/homeserver/homeserverCall.js';
import { CallLimiter } from '../../src/homeserver/callLimiter.js';
import { randomPrivateKey, signRegistration } from '../../src/protocol/signRegistration.js';
import { requestJson } from '../support/matrixClient.js';
import { postText, RawConnection } from '../support/rawHttp.js';
import { capturingLogger } from '../support/capturingLogger.js';
import { waitFor } from '../support/ports.js';
import type { NewNode, RegisteredUser } from '../../src/homeserver/registrar.js';
import type { Outcome } from '../../src/handlers/registrationOutcome.js';
import { hsTokenDigest } from '../../src/http/hsTokenAuth.js';

const HS_TOKEN = 'hs-token-value';
const node = signRegistration(randomPrivateKey(), 'hs.example.org');

describe('HTTP layer', () => {
  let server: Server;
  let base: string;
  let outcome: (node: NewNode) => Promise<RegisteredUser> = async () => ({ userId: '@u:hs', homeServer: 'hs' });
  const logger = capturingLogger([HS_TOKEN]);
  const counted: Outcome[] = [];
  const delivered: [string, boolean][] = [];
  const forgetCalls: (readonly string[] | 'all')[] = [];
  let closeAfterRefusal = false;

  before(async () => {
    const listener = createRequestListener({
      basePath: '/regapp/1',
      hsTokenSha256: hsTokenDigest(HS_TOKEN),
      registerRoute: registerRoute({
        clientKey: () => ({ key: '127.0.0.1', address: '127.0.0.1', unnamedByProxy: false }),
        limitClient: undefined,
        verify: createRegistrationVerifier('hs.example.org', createAddressRecovery().recover),
        register: (request) => outcome(request),
        delivered: (localpart, reached) => delivered.push([localpart, reached]),
        log: logger.log,
        refused: () => {},
        refusalLine: () => true,
        count: (what) => counted.push(what),
        closeAfterRefusal: () => closeAfterRefusal,
      }),
      onTransaction: async () => 'processed',
      queryUser: async (userId) => userId === '@known:hs',
      forgetNodes: async (which) => {
        forgetCalls.push(which);
        return which === 'all' ? 7 : which.length;
      },
      log: logger.log,
    });
    server = createServer(listener).listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/regapp/1`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('answers {user_id, home_server}, and the token and device only when the handler has them', async () => {
    outcome = async () => ({ userId: '@u:hs', homeServer: 'hs' });
    const plain = await requestJson('POST', `${base}/register`, node);
    assert.equal(plain.status, 200);
    assert.deepEqual(plain.body, { user_id: '@u:hs', home_server: 'hs' });
    outcome = async () => ({ userId: '@u:hs', homeServer: 'hs', accessToken: 'tok', deviceId: 'DEV' });
    const login = await requestJson('POST', `${base}/register`, node);
    assert.deepEqual(login.body, { user_id: '@u:hs', home_server: 'hs', access_token: 'tok', device_id: 'DEV' });
  });

  it('serves /register with a query string, a trailing slash or in capitals through the same route', async () => {
    outcome = async () => ({ userId: '@u:hs', homeServer: 'hs' });
    for (const path of ['/register?via=query', '/register/', '/REGISTER', '/Register/?x=1']) {
      const answer = await requestJson('POST', `${base}${path}`, node);
      assert.equal(answer.status, 200, path);
      assert.equal(answer.body.user_id, '@u:hs');
    }
    assert.equal((await requestJson('GET', `${base}/REGISTER`)).status, 405);
  });

  it('parses the body as JSON whatever its content type', async () => {
    outcome = async () => ({ userId: '@u:hs', homeServer: 'hs' });
    const response = await fetch(`${base}/register`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: JSON.stringify(node),
    });
    assert.equal(response.status, 200);
  });

  it('maps a MatrixError from the handler to its status, body and headers', async () => {
    outcome = async () => {
      throw new MatrixError(503, 'M_LIMIT_EXCEEDED', 'slow down', { 'Retry-After': '7' });
    };
    const answer = await requestJson('POST', `${base}/register`, node);
    assert.equal(answer.status, 503);
    assert.equal(answer.headers.get('retry-after'), '7');
    assert.deepEqual(answer.body, { errcode: 'M_LIMIT_EXCEEDED', error: 'slow down' });
  });

  it('counts a homeserver failure as homeserver_error and a full queue as busy, whatever their status', async () => {
    const cases: [() => Promise<never>, Outcome, number][] = [
      [() => Promise.reject(homeserverFailed('it answered HTTP 500')), 'homeserver_error', 502],
      [() => Promise.reject(new HomeserverError(504, 'M_UNKNOWN', 'homeserver failed: no answer')), 'homeserver_error', 504],
      [() => new CallLimiter(0, 0).run(async () => Promise.reject(new Error('never called'))), 'busy', 503],
    ];
    for (const [failure, expected, status] of cases) {
      outcome = failure;
      counted.length = 0;
      assert.equal((await requestJson('POST', `${base}/register`, node)).status, status);
      assert.deepEqual(counted, [expected]);
    }
  });

  it('answers an unexpected failure with 500 M_UNKNOWN, counts it, and keeps serving', async () => {
    outcome = async () => {
      throw new TypeError('boom');
    };
    counted.length = 0;
    const answer = await requestJson('POST', `${base}/register`, node);
    assert.equal(answer.status, 500);
    assert.deepEqual(answer.body, { errcode: 'M_UNKNOWN', error: 'internal error' });
    assert.deepEqual(counted, ['internal_error']);
    outcome = async () => ({ userId: '@u:hs', homeServer: 'hs' });
    assert.equal((await requestJson('POST', `${base}/register`, node)).status, 200);
  });

  it('says a 200 reached the node once it went to the connection whole, and that it did not when the client hung up first', async () => {
    delivered.length = 0;
    outcome = async () => ({ userId: '@u:hs', homeServer: 'hs' });
    assert.equal((await requestJson('POST', `${base}/register`, node)).status, 200);
    await waitFor('word of the delivery', async () => (delivered.length === 1 ? true : undefined), 5000);
    assert.deepEqual(delivered, [[node.localpart, true]]);

    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    let reached: () => void = () => {};
    const handedOver = new Promise<void>((resolve) => (reached = resolve));
    outcome = async () => {
      reached();
      await held;
      return { userId: '@u:hs', homeServer: 'hs' };
    };
    const aborter = new AbortController();
    const request = fetch(`${base}/register`, { method: 'POST', body: JSON.stringify(node), signal: aborter.signal }).catch(() => 'gone');
    await handedOver;
    aborter.abort();
    assert.equal(await request, 'gone');
    await new Promise((resolve) => setTimeout(resolve, 100));
    release();
    await waitFor('word of the failed delivery', async () => (delivered.length === 2 ? true : undefined), 5000);
    assert.deepEqual(delivered[1], [node.localpart, false], 'the answer nobody received');
  });

  it('refuses bad bodies before the handler', async () => {
    let called = false;
    outcome = async () => {
      called = true;
      return { userId: '@u:hs', homeServer: 'hs' };
    };
    const cases: [string, number, string][] = [
      ['', 400, 'M_MISSING_PARAM'],
      ['[1]', 400, 'M_BAD_JSON'],
      ['{', 400, 'M_NOT_JSON'],
      ['"a string"', 400, 'M_NOT_JSON'],
      ['{"localpart": 1}', 400, 'M_INVALID_PARAM'],
      [JSON.stringify({ ...node, pad: 'x'.repeat(5000) }), 413, 'M_TOO_LARGE'],
    ];
    for (const [body, status, errcode] of cases) {
      const answer = await requestJson('POST', `${base}/register`, body === '' ? undefined : body);
      assert.equal(answer.status, status, `${body.slice(0, 20)}: ${JSON.stringify(answer.body)}`);
      assert.equal(answer.body.errcode, errcode);
      assert.equal(typeof answer.body.error, 'string');
    }
    assert.equal(called, false);
  });

  it("closes a refusal's connection while told to, and never a registration's or one the handler refused", async () => {
    const path = '/regapp/1/register';
    const forged = { ...node, password: `${'11'.repeat(64)}1b` };
    const answered = async (body: unknown): Promise<{ status: number; closed: boolean }> => {
      const connection = await RawConnection.open((server.address() as AddressInfo).port);
      try {
        connection.write(postText(path, body));
        const [answer] = await connection.waitFor(1, 5000);
        assert.ok(answer !== undefined, 'an answer');
        return { status: answer.status, closed: answer.headers.connection === 'close' };
      } finally {
        connection.destroy();
      }
    };
    try {
      closeAfterRefusal = true;
      assert.deepEqual(await answered(forged), { status: 403, closed: true });
      assert.deepEqual(await answered({}), { status: 400, closed: true });
      outcome = async () => ({ userId: '@u:hs', homeServer: 'hs' });
      assert.deepEqual(await answered(node), { status: 200, closed: false });
      outcome = async () => {
        throw new MatrixError(403, 'M_FORBIDDEN', 'the node is on the deny list');
      };
      assert.deepEqual(await answered(node), { status: 403, closed: false }, 'refused past the route: its connection stays');
      closeAfterRefusal = false;
      assert.deepEqual(await answered(forged), { status: 403, closed: false });
    } finally {
      closeAfterRefusal = false;
    }
  });

  it('answers unknown paths with 404 M_UNRECOGNIZED and other methods on /register with 405', async () => {
    const unknown = await requestJson('GET', `${base}/nothing`);
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.errcode, 'M_UNRECOGNIZED');
    const outside = await requestJson('POST', base.replace('/regapp/1', '/register'), node);
    assert.equal(outside.status, 404);
    const method = await requestJson('GET', `${base}/register`);
    assert.equal(method.status, 405);
    assert.equal(method.body.errcode, 'M_UNRECOGNIZED');
  });

  it('requires the hs_token on transactions: 401 without, 403 wrong, 200 right', async () => {
    const missing = await requestJson('PUT', `${base}/_matrix/app/v1/transactions/1`, { events: [] });
    assert.equal(missing.status, 401);
    assert.equal(missing.body.errcode, 'M_MISSING_TOKEN');
    const wrong = await requestJson('PUT', `${base}/transactions/1`, { events: [] }, HS_TOKEN + 'x');
    assert.equal(wrong.status, 403);
    const right = await requestJson('PUT', `${base}/transactions/1`, { events: [] }, HS_TOKEN);
    assert.equal(right.status, 200);
    assert.deepEqual(right.body, {});
  });

  it('serves every application-service route under both path forms, each behind the hs_token', async () => {
    const routes: [string, string, number, unknown][] = [
      ['GET', '/users/%40known%3Ahs', 200, {}],
      ['GET', '/users/%40stranger%3Ahs', 404, 'M_NOT_FOUND'],
      ['GET', '/rooms/%23alias%3Ahs', 404, 'M_NOT_FOUND'],
      ['POST', '/ping', 200, {}],
      ['GET', '/thirdparty/protocol/irc', 404, 'M_NOT_FOUND'],
      ['GET', '/thirdparty/user', 404, 'M_NOT_FOUND'],
      ['GET', '/thirdparty/user/irc', 404, 'M_NOT_FOUND'],
      ['GET', '/thirdparty/location', 404, 'M_NOT_FOUND'],
      ['GET', '/thirdparty/location/irc', 404, 'M_NOT_FOUND'],
    ];
    for (const prefix of ['/_matrix/app/v1', '']) {
      for (const [method, path, status, expected] of routes) {
        const url = `${base}${prefix}${path}`;
        const body = method === 'POST' ? { transaction_id: 't' } : undefined;
        const answer = await requestJson(method, url, body, HS_TOKEN);
        assert.equal(answer.status, status, `${method} ${prefix}${path}`);
        if (typeof expected === 'string') assert.equal(answer.body.errcode, expected);
        else assert.deepEqual(answer.body, expected);
        assert.equal((await requestJson(method, url, body)).status, 401, `${path} without a token`);
        assert.equal(
          (await requestJson(method, `${url}?access_token=${HS_TOKEN}`, body)).status,
          status,
          `${path} with the legacy query token`,
        );
      }
      const wrongMethod = await requestJson('DELETE', `${base}${prefix}/transactions/1`, undefined, HS_TOKEN);
      assert.equal(wrongMethod.status, 405);
      assert.equal(wrongMethod.body.errcode, 'M_UNRECOGNIZED');
      assert.equal((await requestJson('GET', `${base}${prefix}/ping`)).status, 405);
      assert.equal((await requestJson('GET', `${base}${prefix}/unknown/thing`, undefined, HS_TOKEN)).status, 404);
    }
    assert.ok(logger.lines().some((line) => /ping from the homeserver transaction_id=t/.test(line)));
  });

  it("takes the operator's users forget with the hs_token only, node addresses or all, nothing else", async () => {
    const forget = (body: unknown, token?: string) =>
      fetch(`${base}/_regservice/forget`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) },
        body: JSON.stringify(body),
      });
    const address = `0x${'a'.repeat(40)}`;
    assert.equal((await forget({ all: true })).status, 401);
    const forwarded = await fetch(`${base}/_regservice/forget`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${HS_TOKEN}`, 'x-forwarded-for': '127.0.0.1' },
      body: JSON.stringify({ all: true }),
    });
    assert.equal(forwarded.status, 403, 'never through a proxy, even with the token');
    assert.equal((await forget({ all: true }, 'wrong')).status, 403);
    assert.equal((await forget({ localparts: ['not-an-address'] }, HS_TOKEN)).status, 400);
    assert.equal((await forget({}, HS_TOKEN)).status, 400);
    assert.deepEqual(forgetCalls, [], 'nothing reached the store');
    assert.deepEqual(await (await forget({ localparts: [address] }, HS_TOKEN)).json(), { forgotten: 1 });
    assert.deepEqual(await (await forget({ all: true }, HS_TOKEN)).json(), { forgotten: 7 });
    assert.deepEqual(forgetCalls, [[address], 'all']);
  });

  it('serves under a base path with characters Express would read as a pattern', async () => {
    const basePath = '/reg(app)/[1]+:x*';
    const listener = createRequestListener({
      basePath,
      hsTokenSha256: hsTokenDigest(HS_TOKEN),
      registerRoute: (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"route":"register"}'),
      onTransaction: async () => 'processed',
      queryUser: async () => true,
      forgetNodes: async () => 0,
      log: logger.log,
    });
    const other = createServer(listener).listen(0, '127.0.0.1');
    await new Promise((resolve) => other.once('listening', resolve));
    const root = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
    assert.deepEqual((await requestJson('POST', `${root}${basePath}/register`, node)).body, { route: 'register' });
    assert.equal((await requestJson('GET', `${root}${basePath}/register`)).status, 405);
    assert.equal((await requestJson('GET', `${root}${basePath}/_matrix/app/v1/users/%40known%3Ahs`, undefined, HS_TOKEN)).status, 200);
    assert.equal((await requestJson('POST', `${root}/regapp/1/register`, node)).status, 404);
    assert.equal(
      (await requestJson('POST', `${root}/reg(app)/[1]+:xy/register`, node)).status,
      404,
      'a longer segment is not the base path',
    );
    await new Promise<void>((resolve) => other.close(() => resolve()));
  });

  it('answers a transaction that is not JSON with 400', async () => {
    const answer = await requestJson('PUT', `${base}/transactions/9`, '{not json', HS_TOKEN);
    assert.equal(answer.status, 400);
    assert.equal(answer.body.errcode, 'M_NOT_JSON');
  });

  it('logs, at debug, what it refused before handing a request over, and never the password', () => {
    const lines = logger.lines().filter((line) => / registration /.test(line));
    assert.ok(
      lines.every((line) => !/outcome=(registered|homeserver_error|busy)/.test(line)),
      'the primary logs what it decided',
    );
    assert.ok(
      lines.some((line) =>
        /debug registration client=127\.0\.0\.1 outcome=invalid status=413 reason="request body is too large"/.test(line),
      ),
    );
    assert.ok(lines.some((line) => /outcome=invalid status=400 reason="request body is not valid JSON"/.test(line)));
    for (const line of logger.lines()) {
      assert.ok(!line.includes(node.password), 'password in a log line');
      assert.ok(!line.includes(HS_TOKEN), 'hs_token in a log line');
    }
  });
});
