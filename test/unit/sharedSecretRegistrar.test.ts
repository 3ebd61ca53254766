import { strict as assert } from 'node:assert';
import { describe, it } from '../support/timedTests.js';
import { suiteScope } from '../support/scope.js';
import { createSharedSecretRegistrar } from '../../src/homeserver/sharedSecretRegistrar.js';
import { MatrixError } from '../../src/protocol/matrixError.js';
import { sharedSecretMac } from '../../src/protocol/sharedSecretMac.js';
import { freePort } from '../support/ports.js';
import { sendJson, startFakeHomeserver, type FakeRoute } from '../support/fakeHomeserver.js';

const node = { localpart: '0x' + '12'.repeat(20), password: 'ab'.repeat(65), displayname: '1212-' + 'cd'.repeat(65) };
const scope = suiteScope();

async function registrarFor(route: FakeRoute, timeoutMs = 2000) {
  const server = await startFakeHomeserver(scope, route);
  return {
    server,
    registrar: createSharedSecretRegistrar({ homeserverUrl: server.url, serverName: 'hs', sharedSecret: 'shh', timeoutMs, login: false }),
  };
}

/** Answers GET with a nonce and POST with `post`. */
function withNonce(post: FakeRoute): FakeRoute {
  let count = 0;
  return (request, res) => {
    if (request.method === 'GET') sendJson(res, 200, { nonce: `nonce${++count}` });
    else post(request, res);
  };
}

async function expectMatrixError(promise: Promise<unknown>, status: number, errcode: string, message: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof MatrixError, String(error));
    assert.equal(error.status, status);
    assert.equal(error.errcode, errcode);
    assert.match(error.message, message);
    return true;
  });
}

describe('shared-secret registrar', () => {
  it('posts the user with displayname, inhibit_login and a MAC over the nonce it got', async () => {
    const { server, registrar } = await registrarFor(
      withNonce((_request, res) => sendJson(res, 200, { user_id: `@${node.localpart}:hs`, home_server: 'hs' })),
    );
    const user = await registrar.register(node);
    assert.deepEqual(user, { userId: `@${node.localpart}:hs`, homeServer: 'hs' });
    const { registrar: silent } = await registrarFor(
      withNonce((_request, res) => sendJson(res, 200, { user_id: `@${node.localpart}:hs` })),
    );
    assert.deepEqual(
      await silent.register(node),
      { userId: `@${node.localpart}:hs`, homeServer: 'hs' },
      'the server name when the answer does not say',
    );
    const post = JSON.parse(server.requests[1]?.body ?? '{}') as Record<string, unknown>;
    assert.equal(server.requests[1]?.url, '/_synapse/admin/v1/register');
    assert.deepEqual(post, {
      nonce: 'nonce1',
      username: node.localpart,
      password: node.password,
      displayname: node.displayname,
      admin: false,
      mac: sharedSecretMac('shh', { nonce: 'nonce1', username: node.localpart, password: node.password, admin: false }),
      inhibit_login: true,
    });
  });

  it('retries once with a new nonce when the nonce was not recognised', async () => {
    let posts = 0;
    const { server, registrar } = await registrarFor(
      withNonce((_request, res) =>
        ++posts === 1
          ? sendJson(res, 400, { errcode: 'M_UNKNOWN', error: 'unrecognised nonce' })
          : sendJson(res, 200, { user_id: '@u:hs' }),
      ),
    );
    assert.equal((await registrar.register(node)).userId, '@u:hs');
    assert.equal(server.requests.length, 4);
  });

  it('gives up after the second unrecognised nonce', async () => {
    const { registrar } = await registrarFor(
      withNonce((_request, res) => sendJson(res, 400, { errcode: 'M_UNKNOWN', error: 'unrecognised nonce' })),
    );
    await expectMatrixError(registrar.register(node), 502, 'M_UNKNOWN', /homeserver failed: .*nonce/);
  });

  it('maps M_USER_IN_USE to 409', async () => {
    const { registrar } = await registrarFor(
      withNonce((_request, res) => sendJson(res, 400, { errcode: 'M_USER_IN_USE', error: 'User ID already taken.' })),
    );
    await expectMatrixError(registrar.register(node), 409, 'M_USER_IN_USE', /already registered/);
  });

  it('explains M_EXCLUSIVE and a rejected HMAC as configuration faults', async () => {
    const exclusive = await registrarFor(withNonce((_request, res) => sendJson(res, 400, { errcode: 'M_EXCLUSIVE', error: 'reserved' })));
    await expectMatrixError(exclusive.registrar.register(node), 502, 'M_UNKNOWN', /exclusive: false/);
    const hmac = await registrarFor(withNonce((_request, res) => sendJson(res, 403, { errcode: 'M_FORBIDDEN', error: 'HMAC incorrect' })));
    await expectMatrixError(hmac.registrar.register(node), 502, 'M_UNKNOWN', /registration_shared_secret/);
  });

  it('says so when shared-secret registration is disabled', async () => {
    const { registrar } = await registrarFor((_request, res) =>
      sendJson(res, 400, { errcode: 'M_UNKNOWN', error: 'Shared secret registration is not enabled' }),
    );
    await expectMatrixError(registrar.register(node), 502, 'M_UNKNOWN', /not enabled/);
  });

  it('turns a homeserver rate limit into 503 with Retry-After', async () => {
    const { registrar } = await registrarFor(
      withNonce((_request, res) => sendJson(res, 429, { errcode: 'M_LIMIT_EXCEEDED', retry_after_ms: 2500 })),
    );
    await assert.rejects(registrar.register(node), (error: unknown) => {
      assert.ok(error instanceof MatrixError);
      assert.equal(error.status, 503);
      assert.equal(error.headers['Retry-After'], '3');
      assert.deepEqual(error.toJSON(), {
        retry_after_ms: 2500,
        errcode: 'M_LIMIT_EXCEEDED',
        error: 'homeserver is rate-limiting registrations; retry later',
      });
      return true;
    });
  });

  it('never returns success without a user_id', async () => {
    const { registrar } = await registrarFor(withNonce((_request, res) => sendJson(res, 200, { home_server: 'hs' })));
    await expectMatrixError(registrar.register(node), 502, 'M_UNKNOWN', /without a user_id/);
  });

  it('maps 5xx and non-JSON answers to 502 saying the homeserver failed', async () => {
    const fiveHundred = await registrarFor((_request, res) => sendJson(res, 500, { errcode: 'M_UNKNOWN' }));
    await expectMatrixError(fiveHundred.registrar.register(node), 502, 'M_UNKNOWN', /homeserver failed: it answered HTTP 500/);
    const html = await registrarFor((_request, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html>proxy</html>'));
    await expectMatrixError(html.registrar.register(node), 502, 'M_UNKNOWN', /not JSON/);
  });

  it('maps a homeserver that does not answer in time to 504', async () => {
    const { registrar } = await registrarFor(() => undefined, 200);
    await expectMatrixError(registrar.register(node), 504, 'M_UNKNOWN', /no answer within 0.2 s/);
  });

  it('maps an unreachable homeserver to 503 with Retry-After', async () => {
    const port = await freePort();
    const registrar = createSharedSecretRegistrar({
      homeserverUrl: `http://127.0.0.1:${port}`,
      serverName: 'hs',
      sharedSecret: 's',
      timeoutMs: 2000,
      login: false,
    });
    await expectMatrixError(registrar.register(node), 503, 'M_UNKNOWN', /homeserver failed: unreachable \(ECONNREFUSED\); retry later/);
    await assert.rejects(
      registrar.register(node),
      (error: unknown) => error instanceof MatrixError && error.headers['Retry-After'] === '5',
    );
  });
});
