import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from '../support/timedTests.js';
import { suiteScope } from '../support/scope.js';
import { addressOfPrivateKey, registerNode } from '../../src/index.js';
import { randomPrivateKey } from '../../src/protocol/signRegistration.js';
import { generateGate, type Gate } from '../support/gate.js';
import { passwordLogin, profileDisplayname, requestJson } from '../support/matrixClient.js';
import { selfSignedCertificate } from '../support/certificates.js';
import { nginxAvailability, startNginx, type RunningNginx } from '../support/nginx.js';
import { freePort } from '../support/ports.js';
import { installedPackage, type InstalledPackage } from '../support/installedPackage.js';
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
  let installed: InstalledPackage;
  /** The other nginx forms, beside the whole site: the snippet in the operator's own server block, the Go README's location, TLS. */
  let snippetUrl: string;
  let goReadmeUrl: string;
  let tlsUrl: string;
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
    installed = await installedPackage();
    gate = await generateGate(scope, {
      serverName,
      homeserverUrl: `http://127.0.0.1:${synapsePort}`,
      bin: installed.bin,
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
    await gate.start(['--metrics-port', String(metricsPort), '--refusal-summary-interval', '1']);

    // The other forms, from the installed command: a location for the operator's own server block, and a TLS site.
    const gatePort = String(new URL(gate.url).port);
    const [snippetPort, goPort, tlsPort] = [await freePort(), await freePort(), await freePort()];
    const forms = join(work, 'forms');
    const snippet = join(work, 'regservice-location.conf');
    const base = ['genconfig', '--out', forms, '--force', '--matrixdomain', serverName, '--matrixurl', synapse.url, '--port', gatePort];
    assert.equal((await run(installed.bin, [...base, '--nginx-location', snippet], work)).code, 0);
    selfSignedCertificate(serverName, { cert: join(work, 'tls.crt'), key: join(work, 'tls.key') });
    const tls = await run(
      installed.bin,
      [
        ...base,
        '--nginx',
        join(work, 'tls-site.conf'),
        '--tls-certificate',
        join(work, 'tls.crt'),
        '--tls-key',
        join(work, 'tls.key'),
        '--public-port',
        String(tlsPort),
      ],
      work,
    );
    assert.equal(tls.code, 0, tls.stderr);
    writeFileSync(
      join(work, 'all-sites.conf'),
      `include ${join(work, 'site.conf')};\ninclude ${join(work, 'tls-site.conf')};\n` +
        // The operator's own server block for Synapse, which includes genconfig's location.
        `server {\n  listen ${snippetPort};\n  server_name ${serverName};\n  location /_matrix { proxy_pass http://127.0.0.1:${synapsePort}; }\n  include ${snippet};\n}\n` +
        // The Go original's README: /regapp/1 passed on as it comes, X-Forwarded-For included.
        `server {\n  listen ${goPort};\n  server_name localhost;\n  location /_matrix { proxy_pass http://127.0.0.1:${synapsePort}; }\n  location /regapp/1 { proxy_pass http://127.0.0.1:${gatePort}; }\n}\n`,
    );
    nginx = await startNginx(scope, join(work, 'nginx'), join(work, 'all-sites.conf'), publicPort);
    publicUrl = `http://127.0.0.1:${publicPort}`;
    metricsUrl = `http://127.0.0.1:${metricsPort}`;
    snippetUrl = `http://127.0.0.1:${snippetPort}`;
    goReadmeUrl = `http://127.0.0.1:${goPort}`;
    tlsUrl = `https://127.0.0.1:${tlsPort}`;
  });

  after(async () => {
    if (nginx !== undefined) await nginx.stop();
    if (gate !== undefined) await gate.stop();
    if (synapse !== undefined) await synapse.stop();
    for (const dir of [work, gate?.dir]) if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('wrote run.sh for the installed package (npm pack, npm install -g), which the unit runs', () => {
    const runSh = readFileSync(join(gate.dir, 'run.sh'), 'utf8');
    const installedBin = realpathSync(installed.bin);
    assert.ok(runSh.includes(installedBin), `run.sh runs ${installedBin}:\n${runSh}`);
    assert.ok(!runSh.includes(new URL('../..', import.meta.url).pathname), 'not the checkout');
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

    // Without nginx in front (the quick start): the service's own URL apart from the homeserver's.
    const direct = randomPrivateKey();
    writeFileSync(keyFile, Buffer.from(direct).toString('hex'), { mode: 0o600 });
    const quick = await run(
      installed.bin,
      ['register', '--key-file', keyFile, '--homeserver', synapse.url, '--gate', gate.url, '--server-name', serverName],
      gate.dir,
    );
    assert.equal(quick.code, 0, quick.stderr);
    assert.equal(quick.stdout.trim(), `@${addressOfPrivateKey(direct)}:${serverName}`);
    registered.push(addressOfPrivateKey(direct));
  });

  it('serves registration through each nginx form: the location in your own server block, and a TLS site', async () => {
    const key = randomPrivateKey();
    const node = await registerNode({ privateKey: key, homeserverUrl: snippetUrl, serverName });
    assert.equal(node.userId, `@${addressOfPrivateKey(key)}:${serverName}`);
    registered.push(addressOfPrivateKey(key));
    const overTls = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpsRequest(
        `${tlsUrl}/regapp/1/register`,
        {
          method: 'POST',
          ca: readFileSync(join(work, 'tls.crt')),
          servername: serverName,
          headers: { 'content-type': 'application/json' },
        },
        (res) => {
          let body = '';
          res.on('data', (chunk: Buffer) => (body += chunk.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.end('{}');
    });
    assert.equal(overTls.status, 400, overTls.body);
    assert.match(overTls.body, /M_MISSING_PARAM/);
  });

  it("answers nginx's own refusal of a body over 4 KiB as Matrix JSON, in the site and in the location snippet", async () => {
    for (const url of [publicUrl, snippetUrl]) {
      const answer = await fetch(`${url}/regapp/1/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ padding: 'x'.repeat(5000) }),
      });
      assert.equal(answer.status, 413, url);
      assert.match(answer.headers.get('content-type') ?? '', /application\/json/);
      assert.equal(((await answer.json()) as { errcode: string }).errcode, 'M_TOO_LARGE');
    }
  });

  it("behind the Go README's nginx, which names no client: a warning with the line to add, and doctor's FAIL", async () => {
    const since = gate.mark();
    const node = await registerNode({ privateKey: randomPrivateKey(), homeserverUrl: goReadmeUrl, serverName });
    registered.push(node.userId.slice(1, 43));
    await gate.waitForLog(
      /warn registration requests came from a trusted proxy address \(--trusted-proxies\) without a client address .*proxy_set_header X-Forwarded-For \$remote_addr;/,
      15_000,
      since,
    );
    const doctor = await run(join(gate.dir, 'run.sh'), ['doctor', '--public-url', goReadmeUrl], gate.dir);
    assert.equal(doctor.code, 1, doctor.stdout);
    assert.match(
      doctor.stdout,
      /FAIL {2}the proxy sets the client address \(X-Forwarded-For\) itself: the service took a request for 192\.0\.2\.83, the X-Forwarded-For doctor made up/,
    );
  });

  it('serves metrics, health and readiness on the metrics port only', async () => {
    const metrics = await (await fetch(`${metricsUrl}/metrics`)).text();
    assert.match(metrics, /regservice_registrations_total\{outcome="registered"\} 5/);
    assert.match(metrics, /regservice_homeserver_call_seconds_count\{call="register",result="ok"\} 5/);
    assert.match(metrics, /regservice_homeserver_calls_in_flight 0/);
    assert.match(metrics, /regservice_transactions_total/);
    // Served, so the Node.js process metrics are collected too, each process's own (workers' settings: unit test).
    assert.match(metrics, /^regservice_process_resident_memory_bytes\{process="primary"\} \d+/m);
    assert.match(metrics, /^regservice_nodejs_eventloop_lag_p99_seconds\{process="0"\} [\d.e-]+/m);
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
    assert.equal(count.stdout.trim(), String(registered.length));
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
    const homeserverYaml = join(work, 'homeserver.yaml');
    const good = await run(runSh, ['doctor', '--public-url', publicUrl, '--homeserver-config', homeserverYaml], gate.dir);
    assert.equal(good.code, 0, good.stdout + good.stderr);
    assert.match(good.stdout, /ok {4}homeserver .* reachable: client-server API versions/);
    assert.match(good.stdout, /ok {4}the shared secret is Synapse's registration_shared_secret: Synapse accepted its MAC/);
    assert.match(good.stdout, /ok {4}the as_token is accepted: acts as @regservice:photon\.test/);
    assert.match(good.stdout, /ok {4}the registration's user namespace: Photon nodes only/);
    assert.match(
      good.stdout,
      /ok {4}the proxy sets the client address \(X-Forwarded-For\) itself: the service saw this machine as 127\.0\.0\.1/,
    );
    assert.match(good.stdout, /ok {4}homeserver loaded our registration and reaches us/);
    assert.match(good.stdout, /ok {4}datapath .*: in use by the service answering/);
    assert.match(good.stdout, /ok {4}http:\/\/127\.0\.0\.1:\d+\/regapp\/1 routes to matrix-regservice/);
    assert.match(good.stdout, /ok {4}http:\/\/127\.0\.0\.1:\d+\/_matrix routes to the homeserver/);
    assert.match(good.stdout, /ok {4}the running service holds the registration's hs_token: an authenticated user query answered 404/);
    assert.match(
      good.stdout,
      /ok {4}the registration Synapse's configuration lists for this service: \S+registration\.yaml, the given one/,
    );
    assert.match(good.stdout, /All checks passed/);

    // A registration edited (another hs_token) but loaded neither by the service nor by Synapse: both are seen.
    const edited = join(work, 'edited-registration.yaml');
    writeFileSync(edited, readFileSync(gate.registrationFile, 'utf8').replace(/hs_token: \S+/, 'hs_token: edited-but-not-loaded'), {
      mode: 0o600,
    });
    const stale = await run(runSh, ['doctor', '--registration', edited, '--homeserver-config', homeserverYaml], gate.dir);
    assert.equal(stale.code, 1, stale.stdout);
    assert.match(stale.stdout, /FAIL {2}the running service holds the registration's hs_token: HTTP 403/);
    assert.match(
      stale.stdout,
      /FAIL {2}the registration Synapse's configuration lists for this service: \S+ has this service's id \S+ but another url, other tokens/,
    );
    // The same tokens, another url (the service moved to another port): Synapse would call where nothing listens.
    const moved = join(work, 'moved-registration.yaml');
    writeFileSync(moved, readFileSync(gate.registrationFile, 'utf8').replace(/url: \S+/, 'url: http://127.0.0.1:1/regapp/1'), {
      mode: 0o600,
    });
    const elsewhere = await run(runSh, ['doctor', '--registration', moved, '--homeserver-config', homeserverYaml], gate.dir);
    assert.match(
      elsewhere.stdout,
      /FAIL {2}the registration Synapse's configuration lists for this service: \S+ has this service's id \S+ but another url/,
    );

    // A wrong secret: every registration would get 502, and doctor says so without creating a user.
    const wrongSecret = join(work, 'wrong-secret');
    writeFileSync(wrongSecret, 'not-the-secret', { mode: 0o600 });
    const wrong = await run(runSh, ['doctor', '--sharesecret-file', wrongSecret], gate.dir);
    assert.equal(wrong.code, 1, wrong.stdout);
    assert.match(
      wrong.stdout,
      /FAIL {2}the shared secret is Synapse's registration_shared_secret: Synapse refused its MAC \(HMAC incorrect\)/,
    );

    assert.equal(await gate.stop(), 0);
    // No service answering: nginx says so as the service would, 503 M_UNKNOWN with Retry-After, never its HTML page.
    for (const url of [publicUrl, snippetUrl]) {
      const answer = await fetch(`${url}/regapp/1/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
      assert.equal(answer.status, 503, url);
      assert.equal(answer.headers.get('retry-after'), '5');
      assert.equal(((await answer.json()) as { errcode: string }).errcode, 'M_UNKNOWN');
    }
    const bad = await run(runSh, ['doctor', '--public-url', publicUrl], gate.dir);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /FAIL {2}homeserver loaded our registration and reaches us .*: M_CONNECTION_FAILED/);
    assert.match(bad.stdout, /FAIL {2}.*\/regapp\/1 routes to matrix-regservice: no answer/);
    assert.match(bad.stdout, /check\(s\) failed/);
    const stillLoggedIn = await passwordLogin(publicUrl, registered[0] as string, 'wrong');
    assert.equal(stillLoggedIn.status, 403, 'Synapse itself still answers through nginx');
  });
});
