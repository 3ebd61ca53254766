import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from '../support/timedTests.js';
import { suiteScope } from '../support/scope.js';
import { randomPrivateKey, signRegistration } from '../../src/protocol/signRegistration.js';
import { BIN, generateGate, type Gate } from '../support/gate.js';
import { startFaultProxy, type FaultProxy } from '../support/faultProxy.js';
import { passwordLogin } from '../support/matrixClient.js';
import { freePort, waitFor } from '../support/ports.js';
import { PG_PASSWORD, startPostgres, type PostgresServer } from '../support/postgres.js';
import { ownSynapseSkip, startSynapse, type RunningSynapse } from '../support/synapse.js';

const run = promisify(execFile);
const serverName = 'photon.test';

describe(
  'from one gate to two, as the README walks it: a node interrupted before the move gets its 200 after it',
  { skip: ownSynapseSkip() },
  () => {
    const scope = suiteScope();
    let work: string;
    let postgres: PostgresServer;
    let synapse: RunningSynapse;
    let proxy: FaultProxy;
    let gate: Gate;

    before(async () => {
      work = mkdtempSync(join(tmpdir(), 'regservice-move-'));
      postgres = await startPostgres();
      const secretFile = join(work, 'shared_secret');
      writeFileSync(secretFile, randomBytes(24).toString('hex'), { mode: 0o600 });
      const synapsePort = await freePort();
      proxy = await startFaultProxy(scope, `http://127.0.0.1:${synapsePort}`);
      gate = await generateGate(scope, { serverName, homeserverUrl: proxy.url, genconfigArgs: ['--sharesecret-file', secretFile] });
      synapse = await startSynapse(scope, {
        serverName,
        port: synapsePort,
        sharedSecretFile: secretFile,
        appserviceFiles: [gate.registrationFile],
      });
    });

    after(async () => {
      if (gate !== undefined) await gate.stop();
      if (synapse !== undefined) await synapse.stop();
      if (postgres !== undefined) await postgres.stop();
      for (const dir of [work, gate?.dir]) if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    });

    it('store copy takes the interrupted registration along; genconfig keeps the tokens; after Synapse restarts the node gets 200', async () => {
      // One gate on LevelDB; a node's registration interrupted after Synapse created the user (the gate killed).
      await gate.start(['--homeserver-timeout', '3']);
      const node = signRegistration(randomPrivateKey(), serverName);
      proxy.fault = (method, path) => (method === 'POST' && path === '/_synapse/admin/v1/register' ? 'hold-response' : 'pass');
      const cut = fetch(`${gate.url}/register`, { method: 'POST', body: JSON.stringify(node) }).catch(() => 'connection lost');
      await waitFor('Synapse to answer the held registration', async () => (proxy.heldAnswers.length === 1 ? true : undefined), 15_000);
      assert.equal(await gate.stop('SIGKILL'), null);
      await cut;
      proxy.fault = () => 'pass';

      // The README's move: store copy, genconfig for two gates (--force), Synapse restarted on the registration.
      const databaseUrl = await postgres.createDatabase();
      const passwordFile = join(work, 'db-password');
      writeFileSync(passwordFile, `${PG_PASSWORD}\n`, { mode: 0o600 });
      const copied = await run(BIN, [
        'store',
        'copy',
        '--from',
        join(gate.dir, '.matrix'),
        '--to',
        databaseUrl,
        '--database-password-file',
        passwordFile,
      ]);
      assert.match(copied.stdout, /^pending registrations: 1 copied, 0 already there$/m);
      const before = String(gate.registration.hs_token);
      const port = new URL(gate.url).port;
      const [publicPort, appservicePort, secondPort] = [await freePort(), await freePort(), await freePort()];
      const again = await run(
        BIN,
        [
          ...[
            'genconfig',
            '--matrixdomain',
            serverName,
            '--matrixurl',
            proxy.url,
            '--port',
            port,
            '--sharesecret-file',
            join(work, 'shared_secret'),
          ],
          ...['--database', databaseUrl, '--database-password-file', passwordFile, '--force'],
          ...['--nginx', join(work, 'site.conf'), '--public-port', String(publicPort), '--appservice-port', String(appservicePort)],
          ...['--upstream', `127.0.0.1:${port}`, '--upstream', `127.0.0.1:${secondPort}`],
        ],
        { cwd: gate.dir },
      );
      assert.match(again.stdout, /Keeping the id and tokens of the registration written before/);
      assert.match(again.stdout, /This run changed what Synapse holds \(the registration's url .*\): restart Synapse/);
      const moved = readFileSync(gate.registrationFile, 'utf8');
      assert.ok(moved.includes(before), 'the same hs_token: Synapse and the gates stay in step');
      copyFileSync(gate.registrationFile, join(synapse.hostDir, 'appservice-0.yaml'));
      await synapse.restart();

      await gate.start(['--homeserver-timeout', '3']);
      const retry = await waitFor(
        "the node's retry answered",
        async () => {
          const answer = await fetch(`${gate.url}/register`, { method: 'POST', body: JSON.stringify(node) });
          return answer.status === 503 ? undefined : { status: answer.status, body: (await answer.json()) as Record<string, unknown> };
        },
        30_000,
      );
      assert.equal(retry.status, 200, JSON.stringify(retry.body));
      assert.equal(retry.body.user_id, `@${node.localpart}:${serverName}`);
      assert.equal((await passwordLogin(synapse.url, node.localpart, node.password)).status, 200);
    });
  },
);
