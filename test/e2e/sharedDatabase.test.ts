import { strict as assert } from 'node:assert';
import pg from 'pg';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, TEST_TIMEOUT_MS } from '../support/timedTests.js';
import { suiteScope } from '../support/scope.js';
import { promisify } from 'node:util';
import { addressOfPrivateKey, registerNode } from '../../src/index.js';
import { randomPrivateKey, signRegistration } from '../../src/protocol/signRegistration.js';
import { openLevelStore } from '../../src/store/leveldb/levelStore.js';
import { startFaultProxy, type FaultProxy } from '../support/faultProxy.js';
import { BIN, generateGate, sameDeploymentGate, type Gate } from '../support/gate.js';
import { createRoomAndSay, passwordLogin, requestJson } from '../support/matrixClient.js';
import { nginxAvailability, startNginx, type RunningNginx } from '../support/nginx.js';
import { freePort, waitFor } from '../support/ports.js';
import { PG_PASSWORD, startPostgres, type PostgresServer } from '../support/postgres.js';
import { ownSynapseSkip, startSynapse, type RunningSynapse } from '../support/synapse.js';

const nginxReady = nginxAvailability();
const skip = ownSynapseSkip() || (nginxReady.available ? false : nginxReady.reason);
const serverName = 'shared.regservice.test';
const run = promisify(execFile);

describe('two gates on one PostgreSQL, behind real nginx, in front of a real Synapse', { skip }, () => {
  const scope = suiteScope();
  let work: string;
  let postgres: PostgresServer;
  let databaseUrl: string;
  let passwordFile: string;
  let synapse: RunningSynapse;
  let proxy: FaultProxy;
  let gateA: Gate;
  let gateB: Gate;
  let nginx: RunningNginx;
  let publicUrl: string;
  const metricsPorts: number[] = [];
  const LEASE_SECONDS = 4;

  // No per-node limit: 50 requests for one node must reach the lease, not the limit. A low ceiling for IPv6 /56s.
  const GATE_ARGS = ['--pending-lease', String(LEASE_SECONDS), '--rate-limit-node', '0', '--accounts-per-hour-ipv6-56', '4'];
  const startA = () => gateA.start(['--matrixurl', proxy.url, '--metrics-port', String(metricsPorts[0]), ...GATE_ARGS]);
  const startB = () => gateB.start(['--metrics-port', String(metricsPorts[1]), ...GATE_ARGS]);
  /** Restarts a gate a test stopped (or whose start failed), for the tests after it, whether that test passed or not. */
  const running = (gate: Gate, start: () => Promise<unknown>) => async () => {
    const child = gate.process()?.child;
    if (child !== undefined && child.exitCode === null && child.signalCode === null) return;
    await gate.stop();
    await start();
  };
  /** A test's own `after` hook, bounded like the suite's hooks. */
  const HOOK = { timeout: TEST_TIMEOUT_MS };
  /** Directly to one gate, as nginx would send it, from client `client` (the gates trust loopback's X-Forwarded-For). */
  const registerAt = async (gate: Gate, body: unknown, client = '127.0.0.1') => {
    const response = await fetch(`${gate.url}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': client },
      body: JSON.stringify(body),
    });
    return { status: response.status, headers: response.headers, body: (await response.json()) as Record<string, unknown> };
  };
  const homeserverRegistrations = async (): Promise<number> => {
    let total = 0;
    for (const port of metricsPorts) {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      for (const match of text.matchAll(/regservice_homeserver_call_seconds_count\{call="register",result="\w+"\} (\d+)/g))
        total += Number(match[1]);
    }
    return total;
  };
  const cli = (args: readonly string[]) => run(BIN, ['--database', databaseUrl, '--database-password-file', passwordFile, ...args]);

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'regservice-shared-'));
    postgres = await startPostgres();
    databaseUrl = await postgres.createDatabase();
    passwordFile = join(work, 'db-password');
    writeFileSync(passwordFile, `${PG_PASSWORD}\n`, { mode: 0o600 });
    const secretFile = join(work, 'shared_secret');
    writeFileSync(secretFile, randomBytes(24).toString('hex'), { mode: 0o600 });
    const [synapsePort, publicPort, appservicePort, portA, portB] = [
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    metricsPorts.push(await freePort(), await freePort());
    const synapseUrl = `http://127.0.0.1:${synapsePort}`;
    proxy = await startFaultProxy(scope, synapseUrl);
    gateA = await generateGate(scope, {
      serverName,
      homeserverUrl: synapseUrl,
      port: portA,
      genconfigArgs: [
        '--sharesecret-file',
        secretFile,
        '--database',
        databaseUrl,
        '--database-password-file',
        passwordFile,
        '--homeserver-timeout',
        '2',
        '--nginx',
        join(work, 'site.conf'),
        '--public-port',
        String(publicPort),
        '--appservice-port',
        String(appservicePort),
        '--upstream',
        `127.0.0.1:${portA}`,
        '--upstream',
        `127.0.0.1:${portB}`,
      ],
    });
    gateB = sameDeploymentGate(scope, gateA, portB);
    assert.equal(
      gateA.registration.url,
      `http://127.0.0.1:${appservicePort}/regapp/1`,
      "the homeserver reaches the gates through nginx's loopback server",
    );
    synapse = await startSynapse(scope, {
      serverName,
      port: synapsePort,
      sharedSecretFile: secretFile,
      appserviceFiles: [gateA.registrationFile],
    });
    await Promise.all([startA(), startB()]);
    nginx = await startNginx(scope, join(work, 'nginx'), join(work, 'site.conf'), publicPort);
    publicUrl = `http://127.0.0.1:${publicPort}`;
  });

  after(async () => {
    if (process.env.REGSERVICE_TEST_DUMP !== undefined)
      writeFileSync(process.env.REGSERVICE_TEST_DUMP, `== A\n${gateA?.output()}\n== B\n${gateB?.output()}`);
    if (nginx !== undefined) await nginx.stop();
    for (const gate of [gateA, gateB]) if (gate !== undefined) await gate.stop();
    if (proxy !== undefined) await proxy.close();
    if (synapse !== undefined) await synapse.stop();
    if (postgres !== undefined) await postgres.stop();
    for (const dir of [work, gateA?.dir]) if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('run.sh names the database and the password file, never the password', async () => {
    const runSh = readFileSync(join(gateA.dir, 'run.sh'), 'utf8');
    assert.ok(runSh.includes(`--database '${databaseUrl}'`) || runSh.includes(`--database ${databaseUrl}`), runSh);
    assert.ok(runSh.includes(`--database-password-file ${passwordFile}`), runSh);
    assert.ok(!runSh.includes(PG_PASSWORD));
    // The primary says where it listens once every worker does: after the first worker answers.
    await gateA.waitForLog(/store="postgresql postgresql:\/\/postgres@127\.0\.0\.1/);
    assert.doesNotMatch(gateA.output() + gateB.output(), new RegExp(PG_PASSWORD));
  });

  it('nodes register through nginx on either gate and log in; both gates and users see every node', async () => {
    const keys = [randomPrivateKey(), randomPrivateKey(), randomPrivateKey(), randomPrivateKey()];
    for (const key of keys) {
      const node = await registerNode({ privateKey: key, homeserverUrl: publicUrl, serverName });
      assert.equal(node.userId, `@${addressOfPrivateKey(key)}:${serverName}`);
    }
    // nginx spreads requests over both gates (round robin).
    for (const gate of [gateA, gateB])
      await gate.waitForLog(/registration localpart=0x[0-9a-f]{40} client=\S+ worker=\d+ outcome=registered/);
    const { stdout } = await cli(['users', 'list']);
    for (const key of keys) assert.ok(stdout.includes(addressOfPrivateKey(key)), stdout);
  });

  it('turns 50 identical concurrent requests spread over both gates into exactly one homeserver registration', async () => {
    const body = signRegistration(randomPrivateKey(), serverName);
    const before = await homeserverRegistrations();
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, index) => registerAt(index % 2 === 0 ? gateA : gateB, body, `198.51.100.${index + 1}`)),
    );
    const statuses = answers.map((answer) => answer.status);
    // Copies arriving after the registration but before its 200 reached the node get that 200 too.
    assert.ok(statuses.includes(200), statuses.join(','));
    assert.ok(
      answers.every(
        (answer) => answer.status === 200 || answer.status === 409 || (answer.status === 503 && answer.headers.get('retry-after') !== null),
      ),
      statuses.join(','),
    );
    assert.equal((await homeserverRegistrations()) - before, 1);
    assert.equal((await passwordLogin(publicUrl, body.localpart, body.password)).status, 200);
  });

  it("holds a client's rate limit across both gates", async () => {
    // Signed for another homeserver: refused with 403 after the signatures are checked.
    const forged = signRegistration(randomPrivateKey(), 'elsewhere.example.org');
    const answers = [];
    for (let index = 0; index < 61; index += 1)
      answers.push((await registerAt(index % 2 === 0 ? gateA : gateB, forged, '203.0.113.9')).status);
    assert.ok(
      answers.slice(0, 60).every((status) => status === 403),
      answers.join(','),
    );
    assert.equal(answers[60], 429, 'the 61st request in a minute, whichever gate it reaches');
    assert.equal((await registerAt(gateB, forged, '203.0.113.10')).status, 403, 'another client is not limited');
  });

  it('holds the ceilings of new accounts across both gates', async () => {
    // GATE_ARGS: 4 new accounts an hour from one IPv6 /56; each from another /64 of it, on either gate.
    const fromSite = (index: number) => `2001:db8:77:${(0x1100 + index).toString(16)}::1`;
    for (let index = 0; index < 4; index += 1) {
      const answer = await registerAt(index % 2 === 0 ? gateA : gateB, signRegistration(randomPrivateKey(), serverName), fromSite(index));
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
    }
    for (const gate of [gateA, gateB]) {
      const refused = await registerAt(gate, signRegistration(randomPrivateKey(), serverName), fromSite(9));
      assert.equal(refused.status, 429, JSON.stringify(refused.body));
      assert.equal(refused.body.errcode, 'M_LIMIT_EXCEEDED');
      assert.match(String(refused.body.error), /new accounts from one IPv6 \/56 this hour/);
      assert.ok(Number(refused.headers.get('retry-after')) > 3000, `Retry-After ${refused.headers.get('retry-after')}`);
    }
    const elsewhere = await registerAt(gateB, signRegistration(randomPrivateKey(), serverName), '2001:db8:78::1');
    assert.equal(elsewhere.status, 200, 'another /56 is not held back');
  });

  it('takes a transaction over 4 KiB from Synapse through nginx: a 5 KB message in a room with a node', async () => {
    const body = signRegistration(randomPrivateKey(), serverName);
    assert.equal((await requestJson('POST', `${publicUrl}/regapp/1/register`, body)).status, 200);
    const login = await passwordLogin(publicUrl, body.localpart, body.password);
    const marks = [gateA.mark(), gateB.mark()];
    await createRoomAndSay(publicUrl, String(login.body.access_token), 'x'.repeat(5000));
    await waitFor(
      'the transaction with the 5 KB message at a gate',
      async () =>
        [gateA, gateB].some((gate, index) =>
          /transaction processed txn_id=\S+ events=\d+ nodes_seen=1/.test(gate.output().slice(marks[index])),
        )
          ? true
          : undefined,
      30_000,
    );
    assert.doesNotMatch(nginx.errorLog(), /client intended to send too large body/);
    assert.equal(
      (await requestJson('POST', `${publicUrl}/regapp/1/transactions/1`, { events: [] })).status,
      404,
      'the application-service routes are not public',
    );
  });

  it('processes a transaction delivered to one gate and replayed to the other once', async () => {
    const txnId = `txn-${randomBytes(4).toString('hex')}`;
    const token = String(gateA.registration.hs_token);
    const put = (gate: Gate) => requestJson('PUT', `${gate.url}/_matrix/app/v1/transactions/${txnId}`, { events: [] }, token);
    assert.equal((await put(gateA)).status, 200);
    assert.equal((await put(gateB)).status, 200);
    await gateA.waitForLog(new RegExp(`transaction processed txn_id=${txnId}`));
    await gateB.waitForLog(new RegExp(`transaction already processed txn_id=${txnId}`));
    assert.doesNotMatch(gateB.output(), new RegExp(`transaction processed txn_id=${txnId}`));
  });

  it('completes on gate B a registration that gate A was killed in after Synapse created the user', async (t) => {
    t.after(async () => {
      proxy.fault = () => 'pass';
      proxy.heldAnswers.length = 0;
      await running(gateA, startA)();
    }, HOOK);
    const body = signRegistration(randomPrivateKey(), serverName);
    proxy.fault = (method, path) => (method === 'POST' && path === '/_synapse/admin/v1/register' ? 'hold-response' : 'pass');
    const cut = registerAt(gateA, body, '192.0.2.1').catch(() => 'connection lost');
    await waitFor('Synapse to answer the held registration', async () => (proxy.heldAnswers.length === 1 ? true : undefined), 10_000);
    assert.equal(proxy.heldAnswers[0], 200);
    assert.equal(await gateA.stop('SIGKILL'), null);
    await cut;
    proxy.heldAnswers.length = 0;
    proxy.fault = () => 'pass';

    const during = await registerAt(gateB, body, '192.0.2.2');
    assert.equal(during.status, 503, JSON.stringify(during.body));
    assert.ok(Number(during.headers.get('retry-after')) >= 1, "while the dead gate's lease runs");
    await gateB.waitForLog(
      /reconciled registrations left unfinished \(a gate stopped or died during them\) confirmed=1 dropped=0 unresolved=0/,
      (LEASE_SECONDS + 10) * 1000,
    );
    const retry = await registerAt(gateB, body, '192.0.2.3');
    assert.equal(retry.status, 200, JSON.stringify(retry.body));
    assert.equal(retry.body.user_id, `@${body.localpart}:${serverName}`);
    assert.equal((await registerAt(gateB, body, '192.0.2.4')).status, 409);
    assert.equal((await passwordLogin(publicUrl, body.localpart, body.password)).status, 200);
  });

  it("never answers 409 for a node's own account whose 200 never reached it: the gate killed while its record was written", async (t) => {
    t.after(running(gateA, startA), HOOK);
    const body = signRegistration(randomPrivateKey(), serverName);
    // The record's write waits behind a lock; the gate is killed meanwhile; PostgreSQL then commits the write.
    const lockerUrl = new URL(databaseUrl);
    lockerUrl.password = PG_PASSWORD;
    const locker = new pg.Client({ connectionString: lockerUrl.href });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE regservice_nodes IN EXCLUSIVE MODE');
      // Gate A was started again after the test before: its metrics listener opens just after its public one.
      const before = await waitFor('the gates metrics', () => homeserverRegistrations().catch(() => undefined), 10_000);
      const cut = registerAt(gateA, body, '192.0.2.11').catch(() => 'connection lost');
      await waitFor('Synapse to create the user', async () => ((await homeserverRegistrations()) > before ? true : undefined), 15_000);
      await new Promise((resolve) => setTimeout(resolve, 500)); // the record's write now waits for the lock
      assert.equal(await gateA.stop('SIGKILL'), null);
      assert.equal(await cut, 'connection lost');
      await locker.query('COMMIT');
    } finally {
      await locker.end();
    }
    await new Promise((resolve) => setTimeout(resolve, (LEASE_SECONDS + 1) * 1000)); // the dead gate's lease ends
    const retry = await waitFor(
      'the retry answered',
      async () => {
        const answer = await registerAt(gateB, body, '192.0.2.12');
        return answer.status === 503 ? undefined : answer;
      },
      30_000,
    );
    assert.equal(retry.status, 200, JSON.stringify(retry.body));
    assert.equal((await registerAt(gateB, body, '192.0.2.13')).status, 409, 'answered once its 200 reached the node');
  });

  it('answers 503 with Retry-After while PostgreSQL restarts, and recovers without a restart of the gates', async () => {
    const since = gateA.mark();
    await postgres.stop();
    try {
      const body = signRegistration(randomPrivateKey(), serverName);
      for (const gate of [gateA, gateB]) {
        const answer = await registerAt(gate, body, '192.0.2.20');
        assert.equal(answer.status, 503, JSON.stringify(answer.body));
        assert.ok(answer.headers.get('retry-after') !== null);
        assert.equal(answer.body.errcode, 'M_UNKNOWN');
      }
      // Requests during the outage, forged and empty ones too, are counted, not logged one by one.
      for (let index = 0; index < 30; index++) await registerAt(gateA, {}, `192.0.2.${100 + index}`);
      const summarized = (): number =>
        [
          ...gateA
            .output()
            .slice(since)
            .matchAll(/info refused requests .*store_unavailable=(\d+)/g),
        ].reduce((sum, match) => sum + Number(match[1]), 0);
      await waitFor('the outage in the refusal summaries', async () => (summarized() >= 31 ? true : undefined), 25_000);
      assert.doesNotMatch(gateA.output().slice(since), / info registration .*outcome=store_unavailable/);
      const ready = await fetch(`http://127.0.0.1:${metricsPorts[1]}/ready`);
      assert.equal(ready.status, 503);
      assert.equal(((await ready.json()) as { store: string }).store, 'unreachable');
      await assert.rejects(cli(['users', 'count']), 'users says the database is down');
    } finally {
      await postgres.start();
    }
    const body = signRegistration(randomPrivateKey(), serverName);
    const answer = await waitFor(
      'a registration after PostgreSQL came back',
      async () => {
        const attempt = await registerAt(gateB, body, '192.0.2.21');
        return attempt.status === 503 ? undefined : attempt;
      },
      20_000,
    );
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.equal((await fetch(`http://127.0.0.1:${metricsPorts[1]}/ready`)).status, 200);
    assert.equal(gateA.process()?.child.exitCode, null, 'gate A still runs');
    assert.equal(gateB.process()?.child.exitCode, null, 'gate B still runs');
  });

  it('warns at start when a gate sharing the database runs with another value of a setting they must share', async (t) => {
    // Gate B as the tests after this one need it: with the deployment's settings, whether this test passed or not.
    t.after(async () => {
      await gateB.stop();
      await startB();
    }, HOOK);
    const since = gateB.mark();
    await gateB.stop();
    await gateB.start(['--metrics-port', String(metricsPorts[1]), ...GATE_ARGS, '--rate-limit-client', '7']);
    await gateB.waitForLog(
      /warn the gates sharing this database disagree on a setting they must share .*setting=--rate-limit-client here=7 gate=\S+ there=\d+/,
      15_000,
      since,
    );
    assert.doesNotMatch(gateB.output().slice(since), /setting=--(?!rate-limit-client)/, 'no other setting differs');
  });

  it('says a password is needed, and names the flag, when the database asks for one and none was given', async () => {
    const failed = await run(BIN, ['--database', databaseUrl, 'users', 'count']).then(
      () => undefined,
      (error: { stderr?: string; code?: number }) => error,
    );
    assert.equal(failed?.code, 1);
    assert.match(failed?.stderr ?? '', /the server asks for a password and none was given: .*--database-password-file FILE/);
    assert.doesNotMatch(failed?.stderr ?? '', /SASL|must be a string/);
  });

  it('store copy moves a LevelDB registry into the database, idempotently, and doctor reads it', async () => {
    const datapath = join(work, 'old-gate');
    const old = await openLevelStore(datapath);
    const addresses = [randomPrivateKey(), randomPrivateKey()].map((key) => addressOfPrivateKey(key));
    for (const localpart of addresses) {
      await old.nodes.put({
        localpart,
        userId: `@${localpart}:${serverName}`,
        displayname: `${localpart.slice(2, 6)}-x`,
        registeredAt: '2025-12-01T00:00:00.000Z',
      });
    }
    await old.close();
    const countBefore = Number((await cli(['users', 'count'])).stdout.trim());
    const first = await run(BIN, ['store', 'copy', '--from', datapath, '--to', databaseUrl, '--database-password-file', passwordFile]);
    assert.match(first.stdout, /registered nodes: 2 copied, 0 already there/);
    const again = await run(BIN, ['store', 'copy', '--from', datapath, '--to', databaseUrl, '--database-password-file', passwordFile]);
    assert.match(again.stdout, /registered nodes: 0 copied, 2 already there/);
    assert.equal(Number((await cli(['users', 'count'])).stdout.trim()), countBefore + 2);
    const shown = JSON.parse((await cli(['users', 'show', addresses[0] ?? ''])).stdout) as { registeredAt: string };
    assert.equal(shown.registeredAt, '2025-12-01T00:00:00.000Z');
  });
});
