import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from '../support/timedTests.js';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { randomPrivateKey, signRegistration } from '../../src/protocol/signRegistration.js';
import { spawnDaemon, waitUntilListening, type DaemonProcess } from '../support/daemonProcess.js';
import { installedPackage, type InstalledPackage } from '../support/installedPackage.js';
import { createRoomAndSay, passwordLogin, requestJson } from '../support/matrixClient.js';
import { listenable, waitFor } from '../support/ports.js';
import { suiteScope } from '../support/scope.js';
import { ownSynapseSkip, sharedSecretRegister, startSynapse, SYNAPSE_ROOT, type RunningSynapse } from '../support/synapse.js';
import { tempDir } from '../support/tempDir.js';

const FIXTURES = new URL('../fixtures/go-original/', import.meta.url).pathname;
const fixture = (name: string): string => readFileSync(join(FIXTURES, name), 'utf8');
const serverName = 'photon.test';
/** The ports the Go original's files name: Synapse's client listener and the service. */
const [SYNAPSE_PORT, SERVICE_PORT] = [8008, 8009];

describe(
  'moving from the Go original: its run.sh and registration.yaml, unchanged, against a real Synapse',
  { skip: ownSynapseSkip() },
  () => {
    const scope = suiteScope();
    let synapse: RunningSynapse;
    let installed: InstalledPackage;
    let daemon: DaemonProcess;
    const earlier = signRegistration(randomPrivateKey(), serverName);
    const runIn = (script: string) =>
      spawnDaemon(scope, 'sh', [script], {
        cwd: synapse.hostDir,
        env: { PATH: `${installed.binDir}:${process.env.PATH ?? ''}` },
        group: true,
      });

    before(async () => {
      for (const port of [SYNAPSE_PORT, SERVICE_PORT]) {
        if ((await listenable(port)) === undefined) throw new Error(`port ${port}, which the Go original's files name, is in use here`);
      }
      const secret = /--sharesecret (\S+)/.exec(fixture('run.sh.v0.2'))?.[1] ?? '';
      const secretFile = join(tempDir('regservice-go-'), 'secret');
      writeFileSync(secretFile, secret, { mode: 0o600 });
      installed = await installedPackage();
      // Synapse as the Go original's README sets it up: registration.yaml and run.sh in its config directory, which is
      // its working directory, and the registration listed by that relative name.
      synapse = await startSynapse(scope, {
        serverName,
        port: SYNAPSE_PORT,
        sharedSecretFile: secretFile,
        files: {
          'registration.yaml': fixture('registration.yaml'),
          'run.sh': fixture('run.sh.v0.2'),
          'run-generated.sh': fixture('run.sh.generated'),
        },
        appserviceEntries: ['registration.yaml'],
      });
      // A node the Go original registered before the move: its account is on Synapse, not in this service's registry.
      assert.equal((await sharedSecretRegister(synapse, { username: earlier.localpart, password: earlier.password })).status, 200);
    });

    it("starts the v0.2 run.sh unchanged, from Synapse's config directory, with the tokens of the Go original's registration", async () => {
      daemon = runIn('run.sh');
      await waitUntilListening(daemon, `http://127.0.0.1:${SERVICE_PORT}/regapp/1`);
      await waitFor('the ping', async () => (/ping succeeded/.test(daemon.output()) ? true : undefined), 15_000);
      const output = daemon.output();
      assert.match(output, /using the Go original's registration \S+\/registration\.yaml \(id 3K7QW2ZP5M-photon\.test\) for the tokens/);
      assert.match(output, /warn the registration's user namespace takes in every user \(the Go original's '@\.\*'\)/);
      assert.match(output, /warn --sharesecret was given on the command line/);
      assert.match(output, /matrixurl "http:\/\/127\.0\.0\.1:8008\/_matrix\/client\/api\/v1\/createUser" names an endpoint/);
      assert.match(output, /matrix-regservice listening url=http:\/\/127\.0\.0\.1:8009\/regapp\/1 .*crypto=libsecp256k1/);
      assert.doesNotMatch(
        output,
        /M2X7Q4T9B1N6R3V8C5Z0K2W7E4Y9U1I6O3P8A5|Y4E8U2I6O0P3A7S1D5F9G2H6J0K4L8Z3X7C1V5B9/,
        'no secret in the log',
      );
    });

    it("answers a node the Go original registered 409, registers a new one that logs in, and takes Synapse's transactions", async () => {
      const base = `http://127.0.0.1:${SERVICE_PORT}/regapp/1`;
      const again = await requestJson('POST', `${base}/register`, earlier);
      assert.equal(again.status, 409, JSON.stringify(again.body));
      assert.equal((await passwordLogin(synapse.url, earlier.localpart, earlier.password)).status, 200, 'its account works as before');
      const fresh = signRegistration(randomPrivateKey(), serverName);
      const answer = await requestJson('POST', `${base}/register`, fresh);
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.equal(answer.body.user_id, `@${fresh.localpart}:${serverName}`);
      const login = await passwordLogin(synapse.url, fresh.localpart, fresh.password);
      assert.equal(login.status, 200);
      await createRoomAndSay(synapse.url, String(login.body.access_token), 'hello after the move');
      await waitFor(
        "Synapse's transaction with the node's message",
        async () => (/transaction processed txn_id=\S+ events=\d+ nodes_seen=1/.test(daemon.output()) ? true : undefined),
        30_000,
      );
    });

    it("genconfig in the Go original's directory keeps its id and tokens, adds no second entry, and Synapse restarts on the patch", async () => {
      await daemon.stop(); // the Go original's run.sh does not exec: its shell dies of the signal, and the service stops
      const homeserverYaml = join(synapse.hostDir, 'homeserver.yaml');
      // Something for --patch-homeserver to do, beside the Go original's relative entry it must leave alone.
      writeFileSync(
        homeserverYaml,
        readFileSync(homeserverYaml, 'utf8').replace('enable_registration: false', 'enable_registration: true'),
      );
      // The generated deployment at a path that is the same for this host and for Synapse in its chroot.
      const inChroot = `/tmp/regservice-moved-${process.pid}`;
      mkdirSync(join(SYNAPSE_ROOT, inChroot));
      symlinkSync(join(SYNAPSE_ROOT, inChroot), inChroot);
      scope.after(() => {
        rmSync(inChroot, { force: true });
        rmSync(join(SYNAPSE_ROOT, inChroot), { recursive: true, force: true });
      });
      const out = inChroot;
      const genconfig = await promisify(execFile)(
        installed.bin,
        ['genconfig', '--homeserver-config', 'homeserver.yaml', '--out', out, '--force', '--patch-homeserver'],
        { cwd: synapse.hostDir },
      );
      assert.match(genconfig.stdout, /Keeping the id and tokens of the Go original's registration \S+\/registration\.yaml/);
      assert.match(genconfig.stdout, /Patched \S+\/homeserver\.yaml .*:\n {2}enable_registration: false\n/);
      const patched = parse(readFileSync(homeserverYaml, 'utf8')) as { app_service_config_files: string[]; enable_registration: boolean };
      assert.deepEqual(
        patched.app_service_config_files,
        [join(out, 'registration.yaml')],
        "ours, with the Go original's id and tokens and the narrow namespace, in place of its registration",
      );
      assert.match(genconfig.stdout, /in place of registration\.yaml/);
      assert.equal(patched.enable_registration, false);
      const ours = parse(readFileSync(join(out, 'registration.yaml'), 'utf8')) as Record<string, unknown>;
      const go = parse(fixture('registration.yaml')) as Record<string, unknown>;
      assert.deepEqual([ours.id, ours.as_token, ours.hs_token], [go.id, go.as_token, go.hs_token]);

      await synapse.restart();
      const moved = spawnDaemon(scope, join(out, 'run.sh'), [], { cwd: out });
      await waitUntilListening(moved, `http://127.0.0.1:${SERVICE_PORT}/regapp/1`);
      await waitFor(
        'the ping through the restarted Synapse',
        async () => (/ping succeeded/.test(moved.output()) ? true : undefined),
        15_000,
      );
      const fresh = signRegistration(randomPrivateKey(), serverName);
      assert.equal((await requestJson('POST', `http://127.0.0.1:${SERVICE_PORT}/regapp/1/register`, fresh)).status, 200);
      assert.equal(await moved.stop(), 0, moved.output());
    });

    it('stops the generated run.sh (tokens, no shared secret) with exit 2 and one line naming --sharesecret-file', async () => {
      const generated = runIn('run-generated.sh');
      assert.equal(await generated.exited(), 2);
      const lines = generated.output().trim().split('\n');
      assert.equal(lines.length, 1, generated.output());
      assert.match(lines[0] ?? '', /Go original's generated run\.sh .*--sharesecret-file/);
    });
  },
);
