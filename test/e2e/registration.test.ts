import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from '../support/timedTests.js';
import { suiteScope } from '../support/scope.js';
import { randomPrivateKey, signRegistration } from '../../src/protocol/signRegistration.js';
import { generateGate, type Gate } from '../support/gate.js';
import { adminGetUser, passwordLogin, profileDisplayname, requestJson } from '../support/matrixClient.js';
import { freePort } from '../support/ports.js';
import { postText, RawConnection } from '../support/rawHttp.js';
import { createAdmin, startSynapse, synapseAvailability, type RunningSynapse } from '../support/synapse.js';

const availability = synapseAvailability();
if (!availability.available) process.stderr.write(`skipping real-Synapse tests: ${availability.reason}\n`);

describe('registration gate against a real Synapse', { skip: availability.available ? false : availability.reason }, () => {
  const scope = suiteScope();
  const serverName = 'photon.test';
  let secretDir: string;
  let synapse: RunningSynapse;
  let deployment: Gate;
  let work: string;
  let gate: string;
  let adminToken: string;
  const secrets: string[] = [];

  const register = (body: unknown) => requestJson('POST', `${gate}/register`, body);

  before(async () => {
    secretDir = mkdtempSync(join(tmpdir(), 'regservice-e2e-'));
    const sharedSecret = randomBytes(24).toString('hex');
    const secretFile = join(secretDir, 'homeserver_shared_secret');
    writeFileSync(secretFile, `${sharedSecret}\n`, { mode: 0o600 });
    const synapsePort = await freePort();
    const homeserverUrl = process.env.SYNAPSE_URL ?? `http://127.0.0.1:${synapsePort}`;

    // As an operator: genconfig in the deployment directory, then load its registration into Synapse.
    deployment = await generateGate(scope, { serverName, homeserverUrl, genconfigArgs: ['--sharesecret-file', secretFile] });
    assert.match(deployment.genconfigOutput, /app_service_config_files/);
    work = deployment.dir;
    gate = deployment.url;
    secrets.push(sharedSecret, String(deployment.registration.as_token), String(deployment.registration.hs_token));

    synapse = await startSynapse(scope, {
      serverName,
      port: synapsePort,
      sharedSecretFile: secretFile,
      appserviceFiles: [deployment.registrationFile],
    });
    adminToken = await createAdmin(synapse, `admin${randomBytes(4).toString('hex')}`, randomBytes(16).toString('hex'));
    await deployment.start();
  });

  after(async () => {
    if (deployment !== undefined) await deployment.stop();
    if (synapse !== undefined) await synapse.stop();
    for (const dir of [secretDir, work]) if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('genconfig wrote registration.yaml 0600 and run.sh 0755 with no secret on its command line', () => {
    assert.equal(statSync(join(work, 'registration.yaml')).mode & 0o777, 0o600);
    assert.equal(statSync(join(work, 'run.sh')).mode & 0o777, 0o755);
    const run = readFileSync(join(work, 'run.sh'), 'utf8');
    for (const secret of secrets) assert.ok(!run.includes(secret), 'run.sh must not contain a secret');
  });

  let registered: { localpart: string; password: string; displayname: string };

  it('registers a fresh key; the node logs in with its signature password and has its displayname', async () => {
    registered = signRegistration(randomPrivateKey(), serverName);
    const answer = await register(registered);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    const userId = `@${registered.localpart}:${serverName}`;
    assert.equal(answer.body.user_id, userId);
    assert.equal(answer.body.home_server, serverName);
    assert.equal(answer.body.access_token, undefined, 'no access token unless asked for');

    const login = await passwordLogin(synapse.url, registered.localpart, registered.password);
    assert.equal(login.status, 200, JSON.stringify(login.body));
    assert.equal(login.body.user_id, userId);
    const profile = await profileDisplayname(synapse.url, userId, String(login.body.access_token));
    assert.equal(profile.status, 200, JSON.stringify(profile.body));
    assert.equal(profile.body.displayname, registered.displayname);

    const devices = await requestJson(
      'GET',
      `${synapse.url}/_synapse/admin/v2/users/${encodeURIComponent(userId)}/devices`,
      undefined,
      adminToken,
    );
    assert.equal(devices.body.total, 1, 'only the login made a device: registration used inhibit_login');
  });

  it('answers a duplicate with 409 M_USER_IN_USE', async () => {
    const answer = await register(registered);
    assert.equal(answer.status, 409);
    assert.equal(answer.body.errcode, 'M_USER_IN_USE');
  });

  it('answers registrations pipelined on one connection, each in its turn, and a half-closed client too; each node logs in', async (t) => {
    const nodes = Array.from({ length: 6 }, () => signRegistration(randomPrivateKey(), serverName));
    const path = new URL(gate).pathname;
    const connection = await RawConnection.open(Number(new URL(gate).port));
    t.after(() => connection.destroy());
    connection.write(nodes.map((node) => postText(`${path}/register`, node)).join(''));
    connection.halfClose();
    const answers = await connection.waitFor(nodes.length, 60_000);
    assert.deepEqual(
      answers.map((answer) => [answer.status, (JSON.parse(answer.body) as { user_id?: string }).user_id]),
      nodes.map((node) => [200, `@${node.localpart}:${serverName}`]),
    );
    await connection.waitFor(nodes.length + 1, 10_000);
    assert.ok(connection.closed, 'closed after the last answer');
    for (const node of nodes) assert.equal((await passwordLogin(synapse.url, node.localpart, node.password)).status, 200);
  });

  it('refuses a forged signature with 403 and creates no user on Synapse', async () => {
    const victim = signRegistration(randomPrivateKey(), serverName);
    const forger = signRegistration(randomPrivateKey(), serverName);
    const answer = await register({ ...victim, password: forger.password });
    assert.equal(answer.status, 403);
    assert.equal(answer.body.errcode, 'M_FORBIDDEN');
    assert.match(String(answer.body.error), /password/);

    const forgedDisplayname = await register({ ...victim, displayname: `${victim.localpart.slice(2, 6)}-${forger.displayname.slice(5)}` });
    assert.equal(forgedDisplayname.status, 403);
    assert.match(String(forgedDisplayname.body.error), /displayname/);

    const user = await adminGetUser(synapse.url, `@${victim.localpart}:${serverName}`, adminToken);
    assert.equal(user.status, 404, 'the victim address must not exist on Synapse');
  });

  it('refuses malformed requests with 4xx Matrix errors naming the problem', async () => {
    const node = signRegistration(randomPrivateKey(), serverName);
    const cases: [unknown, number, string, RegExp][] = [
      ['{"localpart": ', 400, 'M_NOT_JSON', /JSON/],
      [[1, 2], 400, 'M_BAD_JSON', /object/],
      [{ ...node, localpart: node.localpart.toUpperCase().replace('0X', '0x') }, 400, 'M_INVALID_PARAM', /localpart/],
      [{ displayname: node.displayname, password: node.password }, 400, 'M_MISSING_PARAM', /localpart/],
      [{ ...node, password: node.password.slice(0, 128) }, 400, 'M_INVALID_PARAM', /password/],
      [{ ...node, displayname: 'ffff-' + node.displayname.slice(5) }, 400, 'M_INVALID_PARAM', /displayname/],
      ['x'.repeat(10_000), 413, 'M_TOO_LARGE', /large/],
    ];
    for (const [body, status, errcode, message] of cases) {
      const answer = await register(typeof body === 'string' ? body : JSON.stringify(body));
      assert.equal(answer.status, status, `${String(body).slice(0, 40)} → ${JSON.stringify(answer.body)}`);
      assert.equal(answer.body.errcode, errcode);
      assert.match(String(answer.body.error), message);
    }
    const user = await adminGetUser(synapse.url, `@${node.localpart}:${serverName}`, adminToken);
    assert.equal(user.status, 404);
  });

  it('checks the hs_token on application-service transactions', async () => {
    const registration = deployment.registration as Record<string, string>;
    for (const path of ['/transactions/1', '/_matrix/app/v1/transactions/2']) {
      const good = await requestJson('PUT', `${gate}${path}`, { events: [] }, registration.hs_token);
      assert.equal(good.status, 200);
      assert.deepEqual(good.body, {});
      const legacy = await requestJson('PUT', `${gate}${path}?access_token=${registration.hs_token}`, { events: [] });
      assert.equal(legacy.status, 200);
      const wrong = await requestJson('PUT', `${gate}${path}`, { events: [] }, 'not-the-token');
      assert.equal(wrong.status, 403);
      assert.equal(wrong.body.errcode, 'M_FORBIDDEN');
    }
  });

  it('exits 0 on SIGTERM and remembers registered nodes across a restart', async () => {
    assert.equal(await deployment.stop(), 0);
    await deployment.start();
    const answer = await register(registered);
    assert.equal(answer.status, 409);
    assert.equal(answer.body.errcode, 'M_USER_IN_USE');
    assert.match(String(answer.body.error), /already registered$/, 'answered from the store, not the homeserver');

    const fresh = signRegistration(randomPrivateKey(), serverName);
    assert.equal((await register(fresh)).status, 200);
  });

  it('logs one line per outcome and never a secret or password, even at verbosity 5', async () => {
    // Lines may reach our pipe after the answers they describe.
    await deployment.waitForLog(
      new RegExp(
        `info registration localpart=${registered.localpart} client=127\\.0\\.0\\.1 worker=\\d+ outcome=registered status=200 duration_ms=`,
      ),
    );
    await deployment.waitForLog(/outcome=forbidden status=403/);
    await deployment.waitForLog(/outcome=already_registered status=409/);
    const log = deployment.output();
    for (const secret of [...secrets, registered.password]) assert.ok(!log.includes(secret), 'a secret reached the log');
  });
});
