import { strict as assert } from 'node:assert';
import { describe, it } from '../support/timedTests.js';
import { suiteScope } from '../support/scope.js';
import { createAdminApiRegistrar } from '../../src/homeserver/adminApiRegistrar.js';
import { createAppserviceRegistrar } from '../../src/homeserver/appserviceRegistrar.js';
import { pingThroughHomeserver } from '../../src/homeserver/appservicePing.js';
import { MatrixError } from '../../src/protocol/matrixError.js';
import { sendJson, startFakeHomeserver, type FakeHomeserver, type FakeRoute } from '../support/fakeHomeserver.js';

const node = { localpart: '0x' + '12'.repeat(20), password: 'ab'.repeat(65), displayname: '1212-' + 'cd'.repeat(65) };
const userId = `@${node.localpart}:hs`;
const scope = suiteScope();

async function fake(route: FakeRoute): Promise<FakeHomeserver> {
  const server = await startFakeHomeserver(scope, route);
  return server;
}

const isMatrixError = (status: number, message: RegExp) => (error: unknown) =>
  error instanceof MatrixError && error.status === status && message.test(error.message);

describe('admin-api registrar', () => {
  const registrar = (url: string, allowPasswordReset: boolean) =>
    createAdminApiRegistrar({ homeserverUrl: url, serverName: 'hs', adminToken: 'adm', timeoutMs: 2000, allowPasswordReset });

  it('creates a missing user with password and displayname', async () => {
    const server = await fake((request, res) =>
      request.method === 'GET' ? sendJson(res, 404, { errcode: 'M_NOT_FOUND' }) : sendJson(res, 201, { name: userId }),
    );
    assert.deepEqual(await registrar(server.url, false).register(node), { userId, homeServer: 'hs' });
    assert.equal(server.requests[1]?.method, 'PUT');
    assert.equal(server.requests[1]?.url, `/_synapse/admin/v2/users/${encodeURIComponent(userId)}`);
    assert.deepEqual(JSON.parse(server.requests[1]?.body ?? ''), { password: node.password, displayname: node.displayname, admin: false });
  });

  it('answers 409 for an existing user without touching it, unless password reset is allowed', async () => {
    const server = await fake((request, res) =>
      request.method === 'GET' ? sendJson(res, 200, { name: userId }) : sendJson(res, 200, { name: userId }),
    );
    await assert.rejects(registrar(server.url, false).register(node), isMatrixError(409, /already registered/));
    assert.equal(server.requests.length, 1);
    assert.deepEqual(await registrar(server.url, true).register(node), { userId, homeServer: 'hs', passwordReset: true });
  });

  it('says when the admin token is refused', async () => {
    const server = await fake((_request, res) => sendJson(res, 403, { errcode: 'M_FORBIDDEN', error: 'You are not a server admin' }));
    await assert.rejects(registrar(server.url, false).register(node), isMatrixError(502, /admin token .*server admin/));
  });
});

describe('appservice registrar', () => {
  const registrar = (url: string) => createAppserviceRegistrar({ homeserverUrl: url, serverName: 'hs', asToken: 'ast', timeoutMs: 2000 });

  it('registers as the application service and sets the displayname as the user', async () => {
    const server = await fake((request, res) =>
      request.method === 'POST'
        ? sendJson(res, 200, { user_id: userId, home_server: 'hs', access_token: 'tok', device_id: 'DEV' })
        : sendJson(res, 200, {}),
    );
    assert.deepEqual(await registrar(server.url).register(node), { userId, homeServer: 'hs', accessToken: 'tok', deviceId: 'DEV' });
    assert.deepEqual(JSON.parse(server.requests[0]?.body ?? ''), {
      type: 'm.login.application_service',
      username: node.localpart,
      inhibit_login: false,
    });
    assert.equal(
      server.requests[1]?.url,
      `/_matrix/client/v3/profile/${encodeURIComponent(userId)}/displayname?user_id=${encodeURIComponent(userId)}`,
    );
  });

  it('keeps the registration but warns when the displayname could not be set', async () => {
    const server = await fake((request, res) =>
      request.method === 'POST' ? sendJson(res, 200, { user_id: userId }) : sendJson(res, 403, { errcode: 'M_FORBIDDEN' }),
    );
    const user = await registrar(server.url).register(node);
    assert.equal(user.userId, userId);
    assert.match(String(user.warning), /displayname was not set \(HTTP 403 M_FORBIDDEN\)/);
  });

  it('maps M_USER_IN_USE to 409 and an unknown as_token to a clear 502', async () => {
    const inUse = await fake((_request, res) => sendJson(res, 400, { errcode: 'M_USER_IN_USE' }));
    await assert.rejects(registrar(inUse.url).register(node), isMatrixError(409, /already registered/));
    const unknown = await fake((_request, res) => sendJson(res, 401, { errcode: 'M_UNKNOWN_TOKEN' }));
    await assert.rejects(registrar(unknown.url).register(node), isMatrixError(502, /app_service_config_files/));
  });
});

describe('start-up ping', () => {
  it('reports the round trip, or the errcode with a hint', async () => {
    const ok = await fake((_request, res) => sendJson(res, 200, { duration_ms: 12 }));
    assert.deepEqual(await pingThroughHomeserver({ homeserverUrl: ok.url, appserviceId: 'id', asToken: 'a', timeoutMs: 2000 }), {
      ok: true,
      durationMs: 12,
    });
    assert.equal(ok.requests[0]?.url, '/_matrix/client/v1/appservice/id/ping');
    const bad = await fake((_request, res) =>
      sendJson(res, 502, { errcode: 'M_BAD_STATUS', error: 'Application service responded with HTTP 403', status: 403 }),
    );
    const result = await pingThroughHomeserver({ homeserverUrl: bad.url, appserviceId: 'id', asToken: 'a', timeoutMs: 2000 });
    assert.equal(result.ok, false);
    assert.match(result.ok ? '' : result.reason, /^M_BAD_STATUS Application service responded with HTTP 403 \(.*hs_token differs/);
  });
});
