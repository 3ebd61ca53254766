import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from '../support/timedTests.js';
import { suiteScope } from '../support/scope.js';
import { randomPrivateKey, signRegistration } from '../../src/protocol/signRegistration.js';
import { openLevelStore } from '../../src/store/leveldb/levelStore.js';
import { startFaultProxy, type FaultProxy } from '../support/faultProxy.js';
import { generateGate, type Gate } from '../support/gate.js';
import { adminGetUser, passwordLogin, requestJson } from '../support/matrixClient.js';
import { freePort, waitFor } from '../support/ports.js';
import { createAdmin, startSynapse, ownSynapseSkip, type RunningSynapse } from '../support/synapse.js';

const skip = ownSynapseSkip();
const serverName = 'photon.test';
const REGISTER = '/_synapse/admin/v1/register';

describe('faults between the service and a real Synapse', { skip }, () => {
  const scope = suiteScope();
  let secretDir: string;
  let secretFile: string;
  let synapsePort: number;
  let synapse: RunningSynapse;
  let proxy: FaultProxy;
  let direct: Gate;
  let faulty: Gate;
  let adminToken: string;
  let denyFile: string;
  const passwords: string[] = [];
  const sign = () => {
    const body = signRegistration(randomPrivateKey(), serverName);
    passwords.push(body.password);
    return body;
  };
  const FAULTY_ARGS = (): string[] => [
    '--homeserver-timeout',
    '2',
    '--client-timeout',
    '2',
    '--rate-limit-node',
    '0',
    '--deny-list',
    denyFile,
  ];
  const register = (gate: Gate, body: unknown) => requestJson('POST', `${gate.url}/register`, body);
  const userOnSynapse = async (localpart: string) =>
    (await adminGetUser(synapse.url, `@${localpart}:${serverName}`, adminToken)).status === 200;

  before(async () => {
    secretDir = mkdtempSync(join(tmpdir(), 'regservice-faults-'));
    secretFile = join(secretDir, 'shared_secret');
    writeFileSync(secretFile, randomBytes(24).toString('hex'), { mode: 0o600 });
    denyFile = join(secretDir, 'deny.txt');
    writeFileSync(denyFile, '# nobody yet\n');
    synapsePort = await freePort();
    const synapseUrl = `http://127.0.0.1:${synapsePort}`;
    proxy = await startFaultProxy(scope, synapseUrl);
    direct = await generateGate(scope, {
      serverName,
      homeserverUrl: synapseUrl,
      genconfigArgs: ['--id', 'direct', '--sharesecret-file', secretFile],
    });
    faulty = await generateGate(scope, {
      serverName,
      homeserverUrl: proxy.url,
      genconfigArgs: ['--id', 'faulty', '--sharesecret-file', secretFile],
    });
    await direct.start(); // the homeserver is not running yet
  });

  after(async () => {
    for (const gate of [direct, faulty]) if (gate !== undefined) await gate.stop();
    if (proxy !== undefined) await proxy.close();
    if (synapse !== undefined) await synapse.stop();
    for (const dir of [secretDir, direct?.dir, faulty?.dir]) if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('starts while the homeserver is down, answers 503 with Retry-After, and works once it is up, without a restart; its ping says so', async () => {
    const node = sign();
    const down = await register(direct, node);
    assert.equal(down.status, 503);
    assert.equal(down.body.errcode, 'M_UNKNOWN');
    assert.match(String(down.body.error), /homeserver failed: unreachable .*retry later/);
    assert.equal(down.headers.get('retry-after'), '5');
    assert.equal(down.body.retry_after_ms, 5000);
    await direct.waitForLog(/application-service ping failed: cannot reach the homeserver at http:\/\/127\.0\.0\.1:\d+: /);

    synapse = await startSynapse(scope, {
      serverName,
      port: synapsePort,
      sharedSecretFile: secretFile,
      appserviceFiles: [direct.registrationFile, faulty.registrationFile],
      // Common on public servers: profiles only for users who share a room. Every existence check must still work.
      extraConfig: 'require_auth_for_profile_requests: true\nlimit_profile_requests_to_users_who_share_rooms: true\n',
    });
    adminToken = await createAdmin(synapse, `admin${randomBytes(4).toString('hex')}`, randomBytes(16).toString('hex'));
    const up = await register(direct, node);
    assert.equal(up.status, 200, JSON.stringify(up.body));
    assert.equal((await passwordLogin(synapse.url, node.localpart, node.password)).status, 200);
    // The ping is kept up: the log does not end on the failure a later start of the homeserver fixed.
    await direct.waitForLog(/info application-service ping succeeded again: the homeserver reached us/, 40_000);
    await faulty.start(FAULTY_ARGS());
  });

  it('answers a homeserver that hangs with 504 and one that answers HTML with 502, leaving no socket open', async () => {
    proxy.fault = (method, path) => (method === 'POST' && path === REGISTER ? 'hang' : 'pass');
    const started = Date.now();
    const slow = await register(faulty, sign());
    assert.equal(slow.status, 504);
    assert.match(String(slow.body.error), /homeserver failed: no answer within 2 s/);
    assert.ok(Date.now() - started < 6000);

    proxy.fault = (method, path) => (method === 'GET' && path === REGISTER ? 'html' : 'pass');
    const garbage = await register(faulty, sign());
    assert.equal(garbage.status, 502);
    assert.match(String(garbage.body.error), /homeserver failed: .*not JSON/);

    proxy.fault = () => 'refuse';
    const refused = await register(faulty, sign());
    assert.equal(refused.status, 503);
    proxy.fault = () => 'pass';
    await waitFor('the hung sockets to close', async () => (proxy.openSockets() === 0 ? true : undefined), 10_000);
  });

  it('loses nothing when killed -9 after Synapse created the user: the retry succeeds', async () => {
    const node = sign();
    proxy.fault = (method, path) => (method === 'POST' && path === REGISTER ? 'hold-response' : 'pass');
    const cut = register(faulty, node).catch(() => 'connection lost');
    await waitFor('Synapse to answer the held registration', async () => (proxy.heldAnswers.length === 1 ? true : undefined), 10_000);
    assert.equal(proxy.heldAnswers[0], 200);
    assert.equal(await faulty.stop('SIGKILL'), null);
    assert.equal(await cut, 'connection lost');
    proxy.heldAnswers.length = 0;
    proxy.fault = () => 'pass';

    const store = await openLevelStore(join(faulty.dir, '.matrix'));
    assert.ok((await store.nodes.getPending(node.localpart)) !== undefined, 'the pending entry survived the kill');
    await store.close();
    assert.ok(await userOnSynapse(node.localpart));

    await faulty.start(FAULTY_ARGS());
    await faulty.waitForLog(
      /reconciled registrations left unfinished \(a gate stopped or died during them\) confirmed=1 dropped=\d+ unresolved=0/,
    );
    const retry = await register(faulty, node);
    assert.equal(retry.status, 200, JSON.stringify(retry.body));
    assert.equal(retry.body.user_id, `@${node.localpart}:${serverName}`);
    assert.equal((await register(faulty, node)).status, 409);
    assert.equal((await passwordLogin(synapse.url, node.localpart, node.password)).status, 200);
  });

  it('answers the retry 200, not 409, when the homeserver created the user after our call timed out', async () => {
    const node = sign();
    proxy.fault = (method, path) => (method === 'POST' && path === REGISTER ? 'hold-response' : 'pass');
    const timedOut = await register(faulty, node);
    assert.equal(timedOut.status, 504);
    await waitFor('Synapse to answer the held registration', async () => (proxy.heldAnswers.length === 1 ? true : undefined), 10_000);
    assert.equal(proxy.heldAnswers[0], 200);
    proxy.heldAnswers.length = 0;
    proxy.fault = () => 'pass';
    assert.ok(await userOnSynapse(node.localpart));
    const unauthenticatedProfile = await requestJson(
      'GET',
      `${synapse.url}/_matrix/client/v3/profile/${encodeURIComponent(`@${node.localpart}:${serverName}`)}`,
      undefined,
      String(faulty.registration.as_token),
    );
    assert.equal(unauthenticatedProfile.status, 403, 'the profile is private here, so it cannot tell whether the user exists');

    const retry = await register(faulty, node);
    assert.equal(retry.status, 200, JSON.stringify(retry.body));
    assert.equal(retry.body.user_id, `@${node.localpart}:${serverName}`);
    assert.equal((await register(faulty, node)).status, 409);
    assert.equal((await passwordLogin(synapse.url, node.localpart, node.password)).status, 200);
  });

  it('loses nothing when killed -9 before Synapse saw the request: the retry registers', async () => {
    const node = sign();
    proxy.fault = (method, path) => (method === 'POST' && path === REGISTER ? 'hold-request' : 'pass');
    const posts = (): number => proxy.seen.filter((line) => line === `POST ${REGISTER}`).length;
    const postsBefore = posts();
    const cut = register(faulty, node).catch(() => 'connection lost');
    await waitFor('the registration to reach the proxy', async () => (posts() > postsBefore ? true : undefined), 10_000);
    assert.equal(await faulty.stop('SIGKILL'), null);
    await cut;
    proxy.fault = () => 'pass';
    assert.equal(await userOnSynapse(node.localpart), false);
    const store = await openLevelStore(join(faulty.dir, '.matrix'));
    const pendingEntries = await store.nodes.listPending();
    await store.close();
    assert.deepEqual(
      pendingEntries.map((entry) => entry.localpart),
      [node.localpart],
    );

    const since = faulty.mark();
    await faulty.start(FAULTY_ARGS());
    await faulty.waitForLog(
      /reconciled registrations left unfinished \(a gate stopped or died during them\) confirmed=0 dropped=[1-9]\d* unresolved=0/,
      30_000,
      since,
    );
    const retry = await register(faulty, node);
    assert.equal(retry.status, 200, JSON.stringify(retry.body));
    assert.equal((await passwordLogin(synapse.url, node.localpart, node.password)).status, 200);
  });

  it('turns 50 concurrent identical requests into exactly one homeserver registration', async () => {
    const node = sign();
    const before = proxy.seen.filter((line) => line === `POST ${REGISTER}`).length;
    const answers = await Promise.all(Array.from({ length: 50 }, () => register(faulty, node)));
    const statuses = answers.map((answer) => answer.status);
    // A copy that arrives after the registration but before its 200 reached the node gets that 200 too (a record
    // counts as answered once its 200 reached the node); the others 409 (in progress, or answered).
    assert.ok(statuses.includes(200), statuses.join(','));
    assert.ok(
      answers.every((answer) => answer.status === 200 || answer.body.errcode === 'M_USER_IN_USE'),
      statuses.join(','),
    );
    assert.equal(proxy.seen.filter((line) => line === `POST ${REGISTER}`).length - before, 1);
    assert.equal((await register(faulty, node)).status, 409);
  });

  it('reloads the deny list on SIGHUP', async () => {
    const node = sign();
    const reload = async (content: string, expect: RegExp): Promise<void> => {
      const since = faulty.mark();
      writeFileSync(denyFile, content);
      faulty.process()?.child.kill('SIGHUP');
      await faulty.waitForLog(expect, 30_000, since);
    };
    await reload(`${node.localpart}\n`, /reloaded address lists: allow list: none \(everyone\); deny list: 1 addresses/);
    const denied = await register(faulty, node);
    assert.equal(denied.status, 403);
    assert.equal(await userOnSynapse(node.localpart), false);
    await reload('not an address\n', /kept the previous address lists: .*line 1: not an address/);
    assert.equal((await register(faulty, node)).status, 403, 'a bad file keeps the old lists');
    await reload('', /reloaded address lists: .*deny list: 0 addresses/);
    assert.equal((await register(faulty, node)).status, 200);
  });

  it('cuts off a client that sends its headers too slowly', async () => {
    const port = Number(new URL(faulty.url).port);
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => {}); // writes after the server hung up fail; the close is what we wait for
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
    const closed = new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now())));
    socket.write('POST /regapp/1/register HTTP/1.1\r\nHost: x\r\n');
    const timer = setInterval(() => socket.writable && socket.write('X-Slow: 1\r\n'), 300);
    const started = Date.now();
    const end = await Promise.race([closed, new Promise<number>((resolve) => setTimeout(() => resolve(-1), 15_000))]);
    clearInterval(timer);
    socket.destroy();
    assert.notEqual(end, -1, 'the server never closed the slow connection');
    assert.ok(end - started < 6000, `closed after ${end - started} ms`);
    assert.match(answer, /^HTTP\/1\.1 408 [^]*"errcode":"M_UNKNOWN"/);
  });

  it('cuts off a client whose body comes too slowly, or ends before its body is whole, and serves on', async () => {
    const port = Number(new URL(faulty.url).port);
    const body = JSON.stringify(sign());
    const head = `POST /regapp/1/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    const held = (how: 'trickles' | 'half-closes'): Promise<{ ms: number; answer: string }> =>
      new Promise((resolve) => {
        const started = Date.now();
        let answer = '';
        let sent = body.length / 2;
        const socket = connect(port, '127.0.0.1', () => {
          socket.write(head + body.slice(0, sent));
          if (how === 'half-closes') socket.end();
        });
        socket.on('error', () => {}); // writes after the server hung up fail; the close is what we wait for
        socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
        const timer = setInterval(() => socket.writable && sent < body.length - 1 && socket.write(body[sent++] ?? ''), 300);
        const give = setTimeout(() => socket.destroy(), 15_000);
        socket.on('close', () => {
          clearInterval(timer);
          clearTimeout(give);
          resolve({ ms: Date.now() - started, answer });
        });
      });
    const [trickled, halfClosed] = await Promise.all([held('trickles'), held('half-closes')]);
    assert.ok(trickled.ms < 6000, `the trickling client was cut after ${trickled.ms} ms`);
    assert.match(trickled.answer, /^HTTP\/1\.1 408 [^]*"errcode":"M_UNKNOWN"/);
    assert.ok(halfClosed.ms < 6000, `the half-closed connection closed after ${halfClosed.ms} ms`);
    assert.match(halfClosed.answer, /^HTTP\/1\.1 400 [^]*"errcode":"M_NOT_JSON"/);
    assert.equal((await register(faulty, sign())).status, 200, 'serves on');
  });

  it('never logs a secret, token or password, at verbosity 5', () => {
    const secrets = [
      String(direct.registration.as_token),
      String(direct.registration.hs_token),
      String(faulty.registration.as_token),
      String(faulty.registration.hs_token),
      synapse.sharedSecret,
      ...passwords,
    ];
    for (const output of [direct.output(), faulty.output()]) {
      for (const secret of secrets) assert.ok(!output.includes(secret), 'a secret reached the log');
    }
  });
});
