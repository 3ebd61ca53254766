import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { describe, it } from '../support/timedTests.js';
import { BIN } from '../support/gate.js';
import { tempDir } from '../support/tempDir.js';
import { openLevelStore } from '../../src/store/leveldb/levelStore.js';

const GO_REGISTRATION = new URL('../fixtures/go-original/registration.yaml', import.meta.url).pathname;

function run(args: readonly string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(BIN, args, { cwd, timeout: 60_000, killSignal: 'SIGKILL' }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : Number((error as { code?: number }).code), stdout, stderr }),
    );
  });
}

interface Registration {
  id: string;
  url: string;
  as_token: string;
  hs_token: string;
}
const registrationIn = (dir: string): Registration => parse(readFileSync(join(dir, 'registration.yaml'), 'utf8')) as Registration;

/** Every file under dir, as paths relative to it. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name).slice(dir.length + 1));
}

describe('genconfig run again over a deployment', () => {
  it('keeps the id, the tokens and the secret it generated; --force keeps a 0600 backup of what it replaces', async () => {
    const dir = tempDir('regservice-rerun-');
    const args = ['genconfig', '--matrixdomain', 'example.org', '--out', dir];
    assert.equal((await run(args, dir)).code, 0);
    const first = registrationIn(dir);
    const secret = readFileSync(join(dir, 'registration_shared_secret'), 'utf8');

    const again = await run([...args, '--force', '--port', '8010'], dir);
    assert.equal(again.code, 0, again.stderr);
    const second = registrationIn(dir);
    assert.deepEqual([second.id, second.as_token, second.hs_token], [first.id, first.as_token, first.hs_token]);
    assert.equal(readFileSync(join(dir, 'registration_shared_secret'), 'utf8'), secret, 'the secret Synapse was told to read');
    assert.match(again.stdout, /Keeping the id and tokens of the registration written before, \S+registration\.yaml/);
    assert.match(
      again.stdout,
      /This run changed what Synapse holds \(the registration's url \(http:\/\/127\.0\.0\.1:8009\/regapp\/1 → http:\/\/127\.0\.0\.1:8010\/regapp\/1\)\): restart Synapse/,
    );
    const backups = filesUnder(join(dir, 'backups'));
    assert.ok(
      backups.some((file) => file.endsWith('/registration.yaml')) && backups.some((file) => file.endsWith('/run.sh')),
      backups.join(),
    );
    for (const file of backups) assert.equal(statSync(join(dir, 'backups', file)).mode & 0o777, 0o600, file);
    const backedUp = backups.find((file) => file.endsWith('/registration.yaml')) ?? '';
    assert.equal((parse(readFileSync(join(dir, 'backups', backedUp), 'utf8')) as Registration).url, first.url);

    const fresh = await run([...args, '--force', '--port', '8010', '--new-tokens', '--new-shared-secret'], dir);
    assert.equal(fresh.code, 0, fresh.stderr);
    const third = registrationIn(dir);
    assert.notEqual(third.as_token, first.as_token);
    assert.notEqual(third.hs_token, first.hs_token);
    assert.equal(third.id, first.id, 'the deployment keeps its id');
    assert.notEqual(readFileSync(join(dir, 'registration_shared_secret'), 'utf8'), secret);
    assert.match(fresh.stdout, /This run changed what Synapse holds \(the registration's tokens; the shared secret\): restart Synapse/);
  });

  it("--new-shared-secret replaces the secret genconfig made where Synapse reads it, and refuses to touch the operator's own", async () => {
    const dir = tempDir('regservice-new-secret-');
    writeFileSync(join(dir, 'homeserver.yaml'), 'server_name: photon.test\n');
    const out = join(dir, 'rs');
    const args = ['genconfig', '--out', out, '--patch-homeserver'];
    assert.equal((await run(args, dir)).code, 0);
    const secretFile = join(out, 'registration_shared_secret');
    const secret = readFileSync(secretFile, 'utf8');
    assert.match(readFileSync(join(dir, 'homeserver.yaml'), 'utf8'), new RegExp(`registration_shared_secret_path: ${secretFile}`));

    const renewed = await run([...args, '--force', '--new-shared-secret'], dir);
    assert.equal(renewed.code, 0, renewed.stderr);
    assert.notEqual(readFileSync(secretFile, 'utf8'), secret, 'the file Synapse reads holds a new secret');
    assert.match(readFileSync(join(out, 'run.sh'), 'utf8'), new RegExp(`--sharesecret-file ${secretFile} `));
    assert.match(renewed.stdout, /This run changed what Synapse holds \(the shared secret\): restart Synapse/);

    writeFileSync(join(dir, 'homeserver.yaml'), 'server_name: photon.test\nregistration_shared_secret: "operators-own"\n');
    const refused = await run([...args, '--force', '--new-shared-secret'], dir);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /--new-shared-secret: the shared secret is the operator's own .*change it there/);
    assert.doesNotMatch(refused.stderr, /operators-own/, 'never the secret itself');
  });

  it('refuses to replace a registration it cannot read, unless new tokens are asked for', async () => {
    const dir = tempDir('regservice-unreadable-');
    writeFileSync(join(dir, 'registration.yaml'), 'id: x\nas_token: SECRETTOKEN: broken\n', { mode: 0o600 });
    const args = ['genconfig', '--matrixdomain', 'example.org', '--out', dir, '--force'];
    const refused = await run(args, dir);
    assert.equal(refused.code, 2);
    assert.match(
      refused.stderr,
      /cannot read the registration written before, \S+\/registration\.yaml \(.*\): Synapse may hold its tokens/,
    );
    assert.doesNotMatch(refused.stderr, /SECRETTOKEN/);
    assert.ok(!existsSync(join(dir, 'run.sh')), 'nothing was written');
    const replaced = await run([...args, '--new-tokens'], dir);
    assert.equal(replaced.code, 0, replaced.stderr);
    assert.match(registrationIn(dir).as_token, /^[0-9a-f]{64}$/);
  });

  it("in the Go original's directory keeps its registration's port, so that run.sh, the url and what Synapse loads agree", async () => {
    const dir = tempDir('regservice-go-port-');
    writeFileSync(join(dir, 'registration.yaml'), readFileSync(GO_REGISTRATION, 'utf8').replace('127.0.0.1:8009', '127.0.0.1:61009'), {
      mode: 0o600,
    });
    const out = join(dir, 'generated');
    const answer = await run(['genconfig', '--matrixdomain', 'photon.test', '--out', out], dir);
    assert.equal(answer.code, 0, answer.stderr);
    assert.match(answer.stdout, /Keeping the id and tokens of the Go original's registration \S+\/registration\.yaml/);
    assert.equal(registrationIn(out).url, 'http://127.0.0.1:61009/regapp/1');
    assert.match(readFileSync(join(out, 'run.sh'), 'utf8'), /--port 61009 /);
  });

  it("points Synapse at the new registration when --port moves the service off the Go original's url, and says to restart", async () => {
    const dir = tempDir('regservice-go-moved-');
    writeFileSync(join(dir, 'registration.yaml'), readFileSync(GO_REGISTRATION, 'utf8'), { mode: 0o600 });
    writeFileSync(join(dir, 'secret'), 'a-shared-secret\n', { mode: 0o600 });
    writeFileSync(
      join(dir, 'homeserver.yaml'),
      'server_name: photon.test\nregistration_shared_secret_path: secret\nenable_registration: false\n' +
        'app_service_config_files:\n  - registration.yaml   # the Go original\n  - /etc/bridge.yaml\n',
    );
    const out = join(dir, 'generated');
    const answer = await run(['genconfig', '--out', out, '--port', '8011', '--patch-homeserver'], dir);
    assert.equal(answer.code, 0, answer.stderr);
    const patched = readFileSync(join(dir, 'homeserver.yaml'), 'utf8');
    assert.match(patched, new RegExp(`  - ${join(out, 'registration.yaml')}   # the Go original\n  - /etc/bridge.yaml\n`));
    assert.match(answer.stdout, /in place of registration\.yaml/);
    assert.match(answer.stdout, /Restart Synapse/);
    assert.equal(registrationIn(out).url, 'http://127.0.0.1:8011/regapp/1');
    assert.equal(registrationIn(out).hs_token, registrationIn(dir).hs_token, 'the tokens stay');
  });
});

describe("the registry kept while the service ran from the Go original's run.sh", () => {
  it('is copied to the generated datapath, but not while a service holds it: then genconfig refuses and writes nothing', async () => {
    const dir = tempDir('regservice-go-registry-');
    writeFileSync(join(dir, 'registration.yaml'), readFileSync(GO_REGISTRATION, 'utf8'), { mode: 0o600 });
    const held = await openLevelStore(join(dir, '.matrix'));
    const out = join(dir, 'generated');
    const args = ['genconfig', '--matrixdomain', 'photon.test', '--out', out];
    try {
      const refused = await run(args, dir);
      assert.equal(refused.code, 1);
      assert.match(
        refused.stderr,
        /the registry \S+\/\.matrix\/regservice\.leveldb, kept while the service ran from the Go original's run\.sh, is in use: stop that service/,
      );
      assert.ok(!existsSync(out), 'nothing was written');
    } finally {
      await held.close();
    }
    const moved = await run(args, dir);
    assert.equal(moved.code, 0, moved.stderr);
    assert.match(
      moved.stdout,
      /Copied the registry \S+\/\.matrix\/regservice\.leveldb .* to \S+\/generated\/\.matrix\/regservice\.leveldb/,
    );
    assert.ok(existsSync(join(out, '.matrix', 'regservice.leveldb', 'CURRENT')));
    assert.ok(!existsSync(join(out, '.matrix', 'regservice.leveldb', 'LOCK')), 'the lock file is not copied');
  });
});

describe(
  "Synapse's account under a root-owned configuration directory (Arch, Fedora)",
  { skip: process.getuid?.() === 0 ? false : 'needs root' },
  () => {
    it('asks for --synapse-user rather than give Synapse files it cannot read, and takes it', async () => {
      const dir = tempDir('regservice-root-etc-');
      writeFileSync(join(dir, 'homeserver.yaml'), 'server_name: photon.test\nsigning_key_path: photon.signing.key\n');
      writeFileSync(join(dir, 'photon.signing.key'), 'ed25519 a key\n');
      const out = join(dir, 'rs');
      const args = ['genconfig', '--out', out, '--systemd', join(dir, 'unit.service'), '--systemd-user', 'nobody'];
      const refused = await run(args, dir);
      assert.equal(refused.code, 2, refused.stdout + refused.stderr);
      assert.match(
        refused.stderr,
        /cannot tell which account Synapse runs as \(.* are root's.*\); nothing was written\. Give --synapse-user USER/,
      );
      assert.ok(!existsSync(out), 'nothing was written');
      const given = await run([...args, '--synapse-user', 'root'], dir);
      assert.equal(given.code, 0, given.stderr);
    });
  },
);

describe('the registry copied for a service account that does not exist yet', () => {
  it('says to give the copy to that account once it exists', async () => {
    const dir = tempDir('regservice-go-registry-owner-');
    writeFileSync(join(dir, 'registration.yaml'), readFileSync(GO_REGISTRATION, 'utf8'), { mode: 0o600 });
    const store = await openLevelStore(join(dir, '.matrix'));
    await store.close();
    const out = join(dir, 'generated');
    const args = [
      'genconfig',
      '--matrixdomain',
      'photon.test',
      '--out',
      out,
      '--systemd',
      join(dir, 'unit'),
      '--systemd-user',
      'rs-not-yet',
    ];
    const moved = await run(args, dir);
    assert.equal(moved.code, 0, moved.stderr);
    assert.match(moved.stdout, /useradd --system .* rs-not-yet/);
    assert.match(moved.stdout, new RegExp(`chown -R rs-not-yet: ${join(out, '.matrix', 'regservice.leveldb')}`));
  });
});

describe(
  "Synapse's account found on a later run (its own copies from then on)",
  { skip: process.getuid?.() === 0 ? false : 'needs root' },
  () => {
    it("points Synapse's registration and secret at copies of its own, away from the service's", async () => {
      const dir = tempDir('regservice-separate-later-');
      const etc = join(dir, 'etc');
      mkdirSync(etc);
      writeFileSync(join(etc, 'homeserver.yaml'), 'server_name: photon.test\n');
      const out = join(dir, 'out');
      const args = ['genconfig', '--homeserver-config', join(etc, 'homeserver.yaml'), '--patch-homeserver', '--out', out];
      const first = await run([...args, '--synapse-user', 'root'], dir);
      assert.equal(first.code, 0, first.stderr);
      assert.match(
        readFileSync(join(etc, 'homeserver.yaml'), 'utf8'),
        new RegExp(`registration_shared_secret_path: ${join(out, 'registration_shared_secret')}`),
      );

      chownSync(etc, 4200, 4200); // Synapse's own account, from now on
      const second = await run([...args, '--force'], dir);
      assert.equal(second.code, 0, second.stderr);
      const patched = readFileSync(join(etc, 'homeserver.yaml'), 'utf8');
      assert.match(patched, new RegExp(`  - ${join(etc, 'matrix-regservice-registration.yaml')}\n`));
      assert.match(patched, new RegExp(`registration_shared_secret_path: ${join(etc, 'matrix-regservice-shared-secret')}\n`));
      assert.doesNotMatch(patched, new RegExp(out), "nothing of the service's own copies");
      for (const [synapseCopy, serviceCopy] of [
        ['matrix-regservice-registration.yaml', 'registration.yaml'],
        ['matrix-regservice-shared-secret', 'registration_shared_secret'],
      ] as const) {
        const stat = statSync(join(etc, synapseCopy));
        assert.deepEqual([stat.uid, stat.mode & 0o777], [4200, 0o600], synapseCopy);
        assert.equal(readFileSync(join(etc, synapseCopy), 'utf8'), readFileSync(join(out, serviceCopy), 'utf8'));
      }
    });
  },
);
