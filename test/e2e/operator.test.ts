import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { suiteScope } from '../support/scope.js';
import { addressOfPrivateKey, registerNode } from '../../src/index.js';
import { randomPrivateKey } from '../../src/protocol/signRegistration.js';
import { generateGate, type Gate } from '../support/gate.js';
import { passwordLogin, profileDisplayname, requestJson } from '../support/matrixClient.js';
import { nginxAvailability, startNginx, type RunningNginx } from '../support/nginx.js';
import { freePort } from '../support/ports.js';
import { ownSynapseSkip, startSynapse, type RunningSynapse } from '../support/synapse.js';

const nginxReady = nginxAvailability();
const skip = ownSynapseSkip() || (nginxReady.available ? false : nginxReady.reason);
const serverName = 'photon.test';

function run(file: string, args: readonly string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : Number((error as { code?: number }).code), stdout, stderr }),
    );
  });
}

describe('a deployment as the operator makes it: Synapse and the service behind real nginx', { skip }, () => {
  const scope = suiteScope();
  let work: string;
  let synapse: RunningSynapse;
  let gate: Gate;
  let nginx: RunningNginx;
  let publicUrl: string;
  let metricsUrl: string;
  const registered: string[] = [];

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'regservice-operator-'));
    const synapsePort = await freePort();
    const publicPort = await freePort();
    const metricsPort = await freePort();
    // Synapse's own config, as genconfig finds it in the Synapse config directory.
    const secretFile = join(work, 'registration_shared_secret');
    writeFileSync(secretFile, randomBytes(24).toString('hex'), { mode: 0o600 });
    writeFileSync(
      join(work, 'homeserver.yaml'),
      `# the operator's homeserver.yaml\nserver_name: "${serverName}"\nlisteners:\n  - port: ${synapsePort}\n    bind_addresses: ['127.0.0.1']\n    type: http\n    resources:\n      - names: [client]\nregistration_shared_secret_path: ${secretFile}\nenable_registration: false\n`,
    );
    gate = await generateGate(scope, {
      serverName,
      homeserverUrl: `http://127.0.0.1:${synapsePort}`,
      genconfigArgs: [
        '--homeserver-config',
        join(work, 'homeserver.yaml'),
        '--patch-homeserver',
        '--nginx',
        join(work, 'site.conf'),
        '--public-port',
        String(publicPort),
        '--systemd',
        join(work, 'regservice.service'),
      ],
    });
    assert.match(gate.genconfigOutput, /Patched .*homeserver\.yaml/);
    const patched = readFileSync(join(work, 'homeserver.yaml'), 'utf8');
    assert.match(patched, /^# the operator's homeserver.yaml/, 'comments kept');
    assert.ok(patched.includes(gate.registrationFile));

    synapse = await startSynapse(scope, {
      serverName,
      port: synapsePort,
      sharedSecretFile: secretFile,
      appserviceFiles: [gate.registrationFile],
    });
    await gate.start(['--metrics-port', String(metricsPort)]);
    nginx = await startNginx(scope, join(work, 'nginx'), join(work, 'site.conf'), publicPort);
    publicUrl = `http://127.0.0.1:${publicPort}`;
    metricsUrl = `http://127.0.0.1:${metricsPort}`;
  });

  after(async () => {
    if (nginx !== undefined) await nginx.stop();
    if (gate !== undefined) await gate.stop();
    if (synapse !== undefined) await synapse.stop();
    for (const dir of [work, gate?.dir]) if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('wrote a hardened systemd unit that runs run.sh as a dedicated user', () => {
    const unit = readFileSync(join(work, 'regservice.service'), 'utf8');
    assert.match(unit, new RegExp(`ExecStart=${join(gate.dir, 'run.sh').replace(/[.]/g, '\\.')}`));
    for (const line of [
      'User=matrix-regservice',
      'NoNewPrivileges=true',
      'ProtectSystem=strict',
      `ReadWritePaths=${join(gate.dir, '.matrix')}`,
    ]) {
      assert.ok(unit.includes(line), line);
    }
    assert.doesNotMatch(unit, /\{\{/);
  });

  it('a node registers and logs in through nginx on one port, with the library a TypeScript node would use', async () => {
    const key = randomPrivateKey();
    const node = await registerNode({ privateKey: key, homeserverUrl: publicUrl, serverName });
    assert.equal(node.userId, `@${addressOfPrivateKey(key)}:${serverName}`);
    const profile = await profileDisplayname(publicUrl, node.userId, node.accessToken);
    assert.match(String(profile.body.displayname), new RegExp(`^${addressOfPrivateKey(key).slice(2, 6)}-[0-9a-f]{130}$`));
    registered.push(addressOfPrivateKey(key));
  });

  it("the CLI's register command does the same from a key file and prints the user id", async () => {
    const key = randomPrivateKey();
    const keyFile = join(work, 'node.key');
    writeFileSync(keyFile, `0x${Buffer.from(key).toString('hex')}\n`, { mode: 0o600 });
    const result = await run(
      join(gate.dir, 'run.sh'),
      ['register', '--key-file', keyFile, '--homeserver', publicUrl, '--server-name', serverName],
      gate.dir,
    );
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), `@${addressOfPrivateKey(key)}:${serverName}`);
    registered.push(addressOfPrivateKey(key));
    const again = await run(
      join(gate.dir, 'run.sh'),
      ['register', '--key-file', keyFile, '--homeserver', publicUrl, '--server-name', serverName],
      gate.dir,
    );
    assert.equal(again.code, 0, 'an already registered node still logs in');
  });

  it('serves metrics, health and readiness on the metrics port only', async () => {
    const metrics = await (await fetch(`${metricsUrl}/metrics`)).text();
    assert.match(metrics, /regservice_registrations_total\{outcome="registered"\} 2/);
    assert.match(metrics, /regservice_homeserver_call_seconds_count\{call="register",result="ok"\} 2/);
    assert.match(metrics, /regservice_homeserver_calls_in_flight 0/);
    assert.match(metrics, /regservice_transactions_total/);
    assert.equal((await fetch(`${metricsUrl}/health`)).status, 200);
    const ready = await requestJson('GET', `${metricsUrl}/ready`);
    assert.equal(ready.status, 200);
    assert.equal(ready.body.homeserver, 'reachable');
    const throughNginx = await fetch(`${publicUrl}/metrics`);
    assert.doesNotMatch(await throughNginx.text(), /regservice_/);
  });

  it('users list, count, show and export read the store while the service runs', async () => {
    const runSh = join(gate.dir, 'run.sh');
    const count = await run(runSh, ['users', 'count'], gate.dir);
    assert.equal(count.code, 0, count.stderr);
    assert.equal(count.stdout.trim(), '2');
    assert.match(count.stderr, /reading a snapshot/);
    const show = await run(runSh, ['users', 'show', registered[0] as string], gate.dir);
    assert.equal((JSON.parse(show.stdout) as { userId: string }).userId, `@${registered[0]}:${serverName}`);
    const exported = await run(runSh, ['users', 'export'], gate.dir);
    const lines = exported.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { localpart: string });
    assert.deepEqual(lines.map((line) => line.localpart).sort(), [...registered].sort());
    const list = await run(runSh, ['users', 'list'], gate.dir);
    for (const address of registered) assert.ok(list.stdout.includes(address));
    const missing = await run(runSh, ['users', 'show', '0x' + '00'.repeat(20)], gate.dir);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no registered node/);
  });

  it('doctor passes on this deployment, and fails with a readable reason once the service is stopped', async () => {
    const runSh = join(gate.dir, 'run.sh');
    const good = await run(runSh, ['doctor', '--public-url', publicUrl], gate.dir);
    assert.equal(good.code, 0, good.stdout + good.stderr);
    assert.match(good.stdout, /ok {4}homeserver .* reachable: client-server API versions/);
    assert.match(good.stdout, /ok {4}shared-secret registration endpoint present/);
    assert.match(good.stdout, /ok {4}homeserver loaded our registration and reaches us/);
    assert.match(good.stdout, /ok {4}datapath .*: in use by the service answering/);
    assert.match(good.stdout, /ok {4}http:\/\/127\.0\.0\.1:\d+\/regapp\/1 routes to matrix-regservice/);
    assert.match(good.stdout, /ok {4}http:\/\/127\.0\.0\.1:\d+\/_matrix routes to the homeserver/);
    assert.match(good.stdout, /All checks passed/);

    assert.equal(await gate.stop(), 0);
    const bad = await run(runSh, ['doctor', '--public-url', publicUrl], gate.dir);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /FAIL {2}homeserver loaded our registration and reaches us .*: M_CONNECTION_FAILED/);
    assert.match(bad.stdout, /FAIL {2}.*\/regapp\/1 routes to matrix-regservice: no answer/);
    assert.match(bad.stdout, /check\(s\) failed/);
    const stillLoggedIn = await passwordLogin(publicUrl, registered[0] as string, 'wrong');
    assert.equal(stillLoggedIn.status, 403, 'Synapse itself still answers through nginx');
  });
});
