import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from '../support/timedTests.js';
import { suiteScope } from '../support/scope.js';
import { stringify } from 'yaml';
import { randomPrivateKey, signRegistration } from '../../src/protocol/signRegistration.js';
import { openLevelStore } from '../../src/store/leveldb/levelStore.js';
import { BIN, generateGate, type Gate } from '../support/gate.js';
import { createRoomAndSay, invite, passwordLogin, profileDisplayname, requestJson } from '../support/matrixClient.js';
import { freePort, waitFor } from '../support/ports.js';
import { startFaultProxy, type FaultProxy } from '../support/faultProxy.js';
import { createAdmin, ownSynapseSkip, sharedSecretRegister, startSynapse, type RunningSynapse } from '../support/synapse.js';

const skip = ownSynapseSkip();
const execute = promisify(execFile);
const serverName = 'photon.test';

describe('application-service protocol and the admin-api backend against a real Synapse', { skip }, () => {
  const scope = suiteScope();
  let secretDir: string;
  let synapse: RunningSynapse;
  let shared: Gate;
  let admin: Gate;
  let wrong: Gate;
  const node = signRegistration(randomPrivateKey(), serverName);
  const nodeUserId = `@${node.localpart}:${serverName}`;
  let nodeToken: string;
  let roomId: string;
  let processedTxn: string;
  const future = Date.now() + 365 * 24 * 3600 * 1000;

  before(async () => {
    secretDir = mkdtempSync(join(tmpdir(), 'regservice-as-'));
    const secretFile = join(secretDir, 'shared_secret');
    writeFileSync(secretFile, randomBytes(24).toString('hex'), { mode: 0o600 });
    const adminTokenFile = join(secretDir, 'admin_token');
    writeFileSync(adminTokenFile, 'not-yet', { mode: 0o600 });
    const port = await freePort();
    const homeserverUrl = `http://127.0.0.1:${port}`;

    shared = await generateGate(scope, { serverName, homeserverUrl, genconfigArgs: ['--sharesecret-file', secretFile] });
    admin = await generateGate(scope, {
      serverName,
      homeserverUrl,
      genconfigArgs: ['--id', 'regservice-admin', '--backend', 'admin-api', '--admin-token-file', adminTokenFile, '--allow-password-reset'],
    });
    // The homeserver's copy of this registration carries another hs_token: its ping must fail visibly.
    wrong = await generateGate(scope, {
      serverName,
      homeserverUrl,
      genconfigArgs: ['--id', 'regservice-wrong', '--sharesecret-file', secretFile],
    });
    const wrongForSynapse = join(secretDir, 'wrong-registration.yaml');
    writeFileSync(
      wrongForSynapse,
      stringify({
        ...wrong.registration,
        hs_token: 'not-the-hs-token',
        namespaces: { users: [{ exclusive: false, regex: '^@nobody-here:.*$' }], aliases: [], rooms: [] },
      }),
    );

    synapse = await startSynapse(scope, {
      serverName,
      port,
      sharedSecretFile: secretFile,
      appserviceFiles: [shared.registrationFile, admin.registrationFile, wrongForSynapse],
    });
    writeFileSync(adminTokenFile, await createAdmin(synapse, `admin${randomBytes(4).toString('hex')}`, randomBytes(16).toString('hex')));
    await Promise.all([shared.start(), admin.start(), wrong.start()]);
  });

  after(async () => {
    for (const gate of [shared, admin, wrong]) if (gate !== undefined) await gate.stop();
    if (synapse !== undefined) await synapse.stop();
    for (const dir of [secretDir, shared?.dir, admin?.dir, wrong?.dir])
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('pings through Synapse at start: succeeds with matching tokens, fails visibly with a wrong hs_token', async () => {
    await shared.waitForLog(/application-service ping succeeded: the homeserver reached us round_trip_ms=\d+/);
    await admin.waitForLog(/ping succeeded/);
    const failure = await wrong.waitForLog(/warn application-service ping failed: M_BAD_STATUS[^\n]*/);
    assert.match(failure, /hs_token differs/);
  });

  it('admin-api backend: registers a node that logs in with its password and has its displayname', async () => {
    const other = signRegistration(randomPrivateKey(), serverName);
    const answer = await requestJson('POST', `${admin.url}/register`, other);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.equal(answer.body.user_id, `@${other.localpart}:${serverName}`);
    const login = await passwordLogin(synapse.url, other.localpart, other.password);
    assert.equal(login.status, 200, JSON.stringify(login.body));
    const profile = await profileDisplayname(synapse.url, `@${other.localpart}:${serverName}`, String(login.body.access_token));
    assert.equal(profile.body.displayname, other.displayname);
    assert.equal((await requestJson('POST', `${admin.url}/register`, other)).status, 409, 'recorded: 409 without asking Synapse');
  });

  it('admin-api with --allow-password-reset moves an account made with an old password to the signature', async () => {
    const legacy = signRegistration(randomPrivateKey(), serverName);
    assert.equal((await sharedSecretRegister(synapse, { username: legacy.localpart, password: 'old-scheme-password' })).status, 200);
    assert.equal((await requestJson('POST', `${shared.url}/register`, legacy)).status, 409, 'shared-secret cannot rescue it');

    const answer = await requestJson('POST', `${admin.url}/register`, legacy);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.equal((await passwordLogin(synapse.url, legacy.localpart, legacy.password)).status, 200);
    assert.equal((await passwordLogin(synapse.url, legacy.localpart, 'old-scheme-password')).status, 403);
    await admin.waitForLog(
      new RegExp(`localpart=${legacy.localpart} client=127\\.0\\.0\\.1 worker=\\d+ outcome=password_reset status=200`),
    );
  });

  it('receives the transaction Synapse sends when a registered node speaks, and marks the node seen', async () => {
    assert.equal((await requestJson('POST', `${shared.url}/register`, node)).status, 200);
    const login = await passwordLogin(synapse.url, node.localpart, node.password);
    nodeToken = String(login.body.access_token);
    roomId = await createRoomAndSay(synapse.url, nodeToken, 'hello from a Photon node');
    const line = await shared.waitForLog(/transaction processed txn_id=(\S+) events=\d+ nodes_seen=1/, 30_000);
    processedTxn = String(/txn_id=(\S+)/.exec(line)?.[1]);
  });

  it('acknowledges a repeated txnId without processing it again', async () => {
    const replay = await requestJson(
      'PUT',
      `${shared.url}/_matrix/app/v1/transactions/${encodeURIComponent(processedTxn)}`,
      { events: [{ type: 'm.room.message', sender: nodeUserId, origin_server_ts: future, content: {} }] },
      String(shared.registration.hs_token),
    );
    assert.equal(replay.status, 200);
    assert.deepEqual(replay.body, {});
    await shared.waitForLog(new RegExp(`transaction already processed txn_id=${processedTxn}`));
  });

  it("forwards Synapse's user query for an unknown @0x user to us and gets 404", async () => {
    const stranger = `@0x${randomBytes(20).toString('hex')}:${serverName}`;
    await invite(synapse.url, nodeToken, roomId, stranger);
    await shared.waitForLog(new RegExp(`user query from the homeserver user_id=${stranger.replace(/[.]/g, '\\.')} known=false`));
    const direct = await requestJson(
      'GET',
      `${shared.url}/_matrix/app/v1/users/${encodeURIComponent(stranger)}`,
      undefined,
      String(shared.registration.hs_token),
    );
    assert.equal(direct.status, 404);
    assert.equal(direct.body.errcode, 'M_NOT_FOUND');
    const known = await requestJson(
      'GET',
      `${shared.url}/users/${encodeURIComponent(nodeUserId)}`,
      undefined,
      String(shared.registration.hs_token),
    );
    assert.equal(known.status, 200);
  });

  it('keeps last seen and the seen txnIds across a restart', async () => {
    assert.equal(await shared.stop(), 0);
    const store = await openLevelStore(join(shared.dir, '.matrix'));
    const record = await store.nodes.get(node.localpart);
    await store.close();
    assert.ok(record?.lastSeen !== undefined, 'last seen was recorded');
    assert.ok(record.lastSeen >= record.registeredAt);
    assert.ok(record.lastSeen < new Date(future).toISOString(), 'the replayed transaction was not processed');

    await shared.start();
    const replay = await requestJson(
      'PUT',
      `${shared.url}/transactions/${encodeURIComponent(processedTxn)}`,
      { events: [] },
      String(shared.registration.hs_token),
    );
    assert.equal(replay.status, 200);
    const already = new RegExp(`transaction already processed txn_id=${processedTxn}`, 'g');
    await waitFor("the replay's line", async () => ((shared.output().match(already)?.length ?? 0) >= 2 ? true : undefined), 10_000);
    assert.equal(shared.output().match(already)?.length, 2);
  });
});

describe('appservice backend against a real Synapse', { skip }, () => {
  const scope = suiteScope();
  let secretDir: string;
  let synapse: RunningSynapse;
  let gate: Gate;
  let proxy: FaultProxy;

  before(async () => {
    secretDir = mkdtempSync(join(tmpdir(), 'regservice-asb-'));
    const secretFile = join(secretDir, 'shared_secret');
    writeFileSync(secretFile, randomBytes(24).toString('hex'), { mode: 0o600 });
    const port = await freePort();
    // The gate reaches Synapse through a proxy that can lose an answer on its way back.
    proxy = await startFaultProxy(scope, `http://127.0.0.1:${port}`);
    gate = await generateGate(scope, { serverName, homeserverUrl: proxy.url, genconfigArgs: ['--backend', 'appservice'] });
    synapse = await startSynapse(scope, { serverName, port, sharedSecretFile: secretFile, appserviceFiles: [gate.registrationFile] });
    await gate.start(['--homeserver-timeout', '3']);
  });

  after(async () => {
    if (gate !== undefined) await gate.stop();
    if (synapse !== undefined) await synapse.stop();
    for (const dir of [secretDir, gate?.dir]) if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('genconfig made the namespace exclusive, which shuts shared-secret registration out (M_EXCLUSIVE)', async () => {
    const users = (gate.registration.namespaces as { users: { exclusive: boolean }[] }).users;
    assert.equal(users[0]?.exclusive, true);
    const other = signRegistration(randomPrivateKey(), serverName);
    const direct = await sharedSecretRegister(synapse, { username: other.localpart, password: other.password });
    assert.equal(direct.body.errcode, 'M_EXCLUSIVE');
  });

  it('registers a node as the application service and returns its access token; the node has no password', async () => {
    const node = signRegistration(randomPrivateKey(), serverName);
    const answer = await requestJson('POST', `${gate.url}/register`, node);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    const userId = `@${node.localpart}:${serverName}`;
    assert.equal(answer.body.user_id, userId);
    assert.equal(typeof answer.body.access_token, 'string');
    assert.equal(typeof answer.body.device_id, 'string');

    const whoami = await requestJson('GET', `${synapse.url}/_matrix/client/v3/account/whoami`, undefined, String(answer.body.access_token));
    assert.equal(whoami.body.user_id, userId);
    const profile = await profileDisplayname(synapse.url, userId, String(answer.body.access_token));
    assert.equal(profile.body.displayname, node.displayname);
    assert.equal((await passwordLogin(synapse.url, node.localpart, node.password)).status, 403, 'appservice users have no password');
    assert.equal((await requestJson('POST', `${gate.url}/register`, node)).status, 409);
  });

  it("completes a registration whose answer was lost with the node's token, as a direct registration answers", async () => {
    const node = signRegistration(randomPrivateKey(), serverName);
    proxy.fault = (method, path) => (method === 'POST' && path === '/_matrix/client/v3/register' ? 'hold-response' : 'pass');
    try {
      const lost = await requestJson('POST', `${gate.url}/register`, node);
      assert.equal(lost.status, 504, JSON.stringify(lost.body));
      await waitFor('Synapse to answer the held registration', async () => (proxy.heldAnswers.length === 1 ? true : undefined), 10_000);
      assert.equal(proxy.heldAnswers[0], 200, 'Synapse created the user; its answer never reached the gate');
    } finally {
      proxy.fault = () => 'pass';
    }
    const retry = await requestJson('POST', `${gate.url}/register`, node);
    assert.equal(retry.status, 200, JSON.stringify(retry.body));
    assert.equal(typeof retry.body.access_token, 'string', 'a token: such users have no password to log in with');
    assert.equal(retry.body.device_id, 'MATRIX_REGSERVICE', 'one device for completions, whatever the retries');
    const whoami = await requestJson('GET', `${synapse.url}/_matrix/client/v3/account/whoami`, undefined, String(retry.body.access_token));
    assert.equal(whoami.body.user_id, `@${node.localpart}:${serverName}`);
    assert.equal((await requestJson('POST', `${gate.url}/register`, node)).status, 409);
  });

  it('moves its passwordless nodes to passwords as the README says: users forget, then admin-api with --allow-password-reset', async () => {
    const node = signRegistration(randomPrivateKey(), serverName);
    assert.equal((await requestJson('POST', `${gate.url}/register`, node)).status, 200);
    assert.equal((await passwordLogin(synapse.url, node.localpart, node.password)).status, 403, 'no password yet');
    const runSh = join(gate.dir, 'run.sh');
    const unasked = await execute(runSh, ['users', 'forget', node.localpart], { cwd: gate.dir }).catch(
      (error: { code: number; stderr: string }) => error,
    );
    assert.equal((unasked as { code: number }).code, 2);
    assert.match((unasked as { stderr: string }).stderr, /no terminal to ask on: give --yes/);

    // The README's switch: genconfig for admin-api (a namespace no longer exclusive), Synapse restarted on it.
    const adminTokenFile = join(secretDir, 'admin_token');
    writeFileSync(adminTokenFile, await createAdmin(synapse, `admin${randomBytes(4).toString('hex')}`, randomBytes(16).toString('hex')), {
      mode: 0o600,
    });
    const port = new URL(gate.url).port;
    await execute(
      BIN,
      [
        'genconfig',
        '--matrixdomain',
        serverName,
        '--matrixurl',
        proxy.url,
        '--port',
        port,
        '--backend',
        'admin-api',
        '--admin-token-file',
        adminTokenFile,
        '--allow-password-reset',
        '--force',
      ],
      { cwd: gate.dir },
    );
    copyFileSync(gate.registrationFile, join(synapse.hostDir, 'appservice-0.yaml'));
    await synapse.restart();
    // Forgotten through the running service, which holds the registry.
    const forgot = await execute(runSh, ['users', 'forget', node.localpart, '--yes'], { cwd: gate.dir });
    assert.match(forgot.stdout, /^forgot 1 registered node record: their next signed requests reach the homeserver$/m);
    await gate.waitForLog(/forgot registered nodes at the operator's request: .* forgotten=1/);
    await gate.stop();
    await gate.start(['--homeserver-timeout', '3']);

    const moved = await requestJson('POST', `${gate.url}/register`, node);
    assert.equal(moved.status, 200, JSON.stringify(moved.body));
    await gate.waitForLog(new RegExp(`registration localpart=${node.localpart} .*outcome=password_reset`));
    assert.equal((await passwordLogin(synapse.url, node.localpart, node.password)).status, 200, 'its password is its signature now');
  });
});
