import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { parse } from 'yaml';
import { join } from 'node:path';
import { describe, it } from '../support/timedTests.js';
import { spawnDaemon, waitUntilListening } from '../support/daemonProcess.js';
import { freePort, waitFor } from '../support/ports.js';
import { tempDir } from '../support/tempDir.js';
import { openLevelStore } from '../../src/store/leveldb/levelStore.js';

const BIN = new URL('../../bin/matrix-regservice', import.meta.url).pathname;

function run(args: readonly string[], cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // A command that should have exited but serves instead is killed, and the test fails on its status.
    execFile(BIN, args, { cwd, timeout: 60_000, killSignal: 'SIGKILL' }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : Number((error as { code?: number }).code), stdout, stderr }),
    );
  });
}

const PHOTON_NAMESPACE = "namespaces:\n  users:\n    - {exclusive: false, regex: '^@0x[0-9a-f]{40}:example\\.org$'}\n";

function deployment(): { dir: string; args: string[] } {
  const dir = tempDir('regservice-cli-');
  writeFileSync(join(dir, 'secret'), 'a-shared-secret\n', { mode: 0o600 });
  writeFileSync(
    join(dir, 'registration.yaml'),
    `id: test\nurl: http://127.0.0.1:1/regapp/1\nas_token: as-token-1234\nhs_token: hs-token-1234\n${PHOTON_NAMESPACE}`,
    { mode: 0o600 },
  );
  return {
    dir,
    args: [
      '--matrixdomain',
      'example.org',
      '--sharesecret-file',
      join(dir, 'secret'),
      '--registration',
      join(dir, 'registration.yaml'),
      '--datapath',
      join(dir, 'data'),
    ],
  };
}

describe('the built CLI', () => {
  it('exits 2 listing every bad setting, without a stack trace', async () => {
    const result = await run(['--port', 'eighty', '--verbosity', '7', '--matrixurl', 'localhost']);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /port \(from command line\) must be a whole number/);
    assert.match(result.stderr, /verbosity/);
    assert.match(result.stderr, /matrixurl/);
    assert.match(result.stderr, /matrixdomain is required/);
    assert.doesNotMatch(result.stderr, /\n\s+at /);
  });

  it('exits 2 on trusted proxies it cannot parse, naming the setting', async () => {
    for (const proxies of ['loopback,bogus', '10.0.0.0/33']) {
      const { args } = deployment();
      const result = await run([...args, '--trusted-proxies', proxies]);
      assert.equal(result.code, 2, `${proxies}: ${result.stderr}`);
      assert.match(result.stderr, /trusted-proxies must be comma-separated addresses, CIDRs/);
      assert.doesNotMatch(result.stderr, /\n\s+at /);
    }
  });

  it('serves under a registration url whose path has parentheses', async (t) => {
    const { args, dir } = deployment();
    writeFileSync(
      join(dir, 'registration.yaml'),
      `id: test\nurl: http://127.0.0.1:1/gate(1)\nas_token: as-token-1234\nhs_token: hs-token-1234\n${PHOTON_NAMESPACE}`,
      { mode: 0o600 },
    );
    const port = await freePort();
    const daemon = spawnDaemon(t, BIN, [...args, '--port', String(port)]);
    await waitUntilListening(daemon, `http://127.0.0.1:${port}/gate(1)`);
    assert.equal(await daemon.stop(), 0);
  });

  it('users on a mistyped datapath says there is none, exits 1 and creates nothing; it needs no --matrixdomain', async () => {
    const typo = join(tempDir('regservice-typo-'), 'dta');
    for (const action of ['count', 'list']) {
      const result = await run(['users', action, '--datapath', typo]);
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, /there is no database at .*dta\/regservice\.leveldb: is --datapath right\?/);
      assert.equal(existsSync(typo), false, 'no datapath was created');
    }
  });

  it('genconfig --patch-homeserver on a file it cannot patch safely writes nothing and says what to add by hand', async () => {
    const dir = tempDir('regservice-patch-');
    const homeserver = join(dir, 'homeserver.yaml');
    const text =
      'server_name: example.org\nregistration_shared_secret: "x"\napp_service_config_files:\n  - /etc/a.yaml\napp_service_config_files:\n  - /etc/b.yaml\n';
    writeFileSync(homeserver, text);
    const out = join(dir, 'out');
    const result = await run(['genconfig', '--homeserver-config', homeserver, '--patch-homeserver', '--out', out]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      result.stderr,
      /cannot patch .*homeserver\.yaml safely; nothing was written:\n  - app_service_config_files is set 2 times \(lines 3, 5\)/,
    );
    assert.match(result.stderr, /add by hand:\n  enable_registration: false/);
    assert.equal(existsSync(out), false, 'no deployment file');
    assert.deepEqual(readdirSync(dir), ['homeserver.yaml'], 'no backup');
    assert.equal(readFileSync(homeserver, 'utf8'), text);
  });

  it('masks a database password given as ?password= or ?sslpassword= in what it prints, and refuses a passfile', async () => {
    const url = 'postgresql://regservice@127.0.0.1:1/regservice?sslmode=disable&password=planted-db-secret&sslpassword=planted-key-secret';
    const users = await run(['users', 'count', '--database', url]);
    assert.equal(users.code, 1, users.stderr);
    assert.match(
      users.stderr,
      /cannot connect to the database postgresql:\/\/regservice@127\.0\.0\.1:1\/regservice\?sslmode=disable&password=\*\*\*&sslpassword=\*\*\*/,
    );
    assert.doesNotMatch(users.stderr, /planted/);
    const passfile = await run(['users', 'count', '--database', 'postgresql://regservice@127.0.0.1:1/regservice?passfile=/root/.pgpass']);
    assert.equal(passfile.code, 2, passfile.stderr);
    assert.match(passfile.stderr, /passfile, which this service does not read/);
  });

  it("takes the Go original's flags: one dash, its diagnostic flags ignored with one warning, and --logfile", async (t) => {
    const { args, dir } = deployment();
    const port = await freePort();
    const logfile = join(dir, 'regservice.log');
    const goStyle = [
      ...args,
      '-port',
      String(port),
      '-verbosity',
      '4',
      '-workers', // a worker whatever the cores, whose lines are checked too
      '1',
      '-debug',
      '-pprof',
      '-pprofport',
      '6060',
      '-vmodule',
      'rest=5',
      '-logfile',
      logfile,
    ].map((arg) => arg.replace(/^--/, '-'));
    const daemon = spawnDaemon(t, BIN, goStyle);
    await waitUntilListening(daemon, `http://127.0.0.1:${port}/regapp/1`);
    // The primary serves too: requests on connections of their own until a worker has served one.
    const workerLine = /debug registration client=127\.0\.0\.1 outcome=invalid status=400 .* worker=\d+/;
    await waitFor(
      "a worker's line in the log file",
      async () => {
        await fetch(`http://127.0.0.1:${port}/regapp/1/register`, { method: 'POST', body: '{}', headers: { connection: 'close' } });
        return workerLine.test(readFileSync(logfile, 'utf8')) || undefined;
      },
      10_000,
    );
    assert.equal(await daemon.stop(), 0);
    assert.match(daemon.output(), /logging to .*regservice\.log/);
    const log = readFileSync(logfile, 'utf8');
    assert.match(log, /warn ignoring the Go original's diagnostic flags --debug, --pprof, --pprofport, --vmodule/);
    assert.match(log, /info matrix-regservice listening/);
    assert.match(log, workerLine, "the workers' lines too");
  });

  it('genconfig --container writes both volumes: the config file the image runs on, and the copy Synapse reads', async () => {
    const root = tempDir('regservice-container-');
    const data = join(root, 'data');
    const home = join(root, 'home');
    mkdirSync(data);
    mkdirSync(home);
    // As matrixdotorg/synapse's generate writes it: the secret inline, a listener on every address.
    writeFileSync(
      join(data, 'homeserver.yaml'),
      'server_name: "containers.test"\nlisteners:\n  - port: 8008\n    tls: false\n    type: http\n    x_forwarded: true\n    resources:\n      - names: [client, federation]\nregistration_shared_secret: "generated-inline"\n',
    );
    const result = await run([
      'genconfig',
      '--container',
      '--homeserver-config',
      join(data, 'homeserver.yaml'),
      '--out',
      home,
      '--synapse-registration',
      join(data, 'matrix-regservice.yaml'),
    ]);
    assert.equal(result.code, 0, result.stderr);
    const config = parse(readFileSync(join(home, 'regservice.yaml'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual(config, {
      matrixdomain: 'containers.test',
      matrixurl: 'http://synapse:8008',
      host: '0.0.0.0',
      port: 8009,
      datapath: '/var/lib/matrix-regservice/state',
      registration: join(home, 'registration.yaml'),
      backend: 'shared-secret',
      'sharesecret-file': join(home, 'registration_shared_secret'),
      'trusted-proxies': '172.28.56.10',
      verbosity: 3,
    });
    assert.equal(readFileSync(join(home, 'registration_shared_secret'), 'utf8').trim(), 'generated-inline');
    const registration = readFileSync(join(home, 'registration.yaml'), 'utf8');
    assert.equal(readFileSync(join(data, 'matrix-regservice.yaml'), 'utf8'), registration, "Synapse's copy");
    assert.match(registration, /^url: http:\/\/regservice:8009\/regapp\/1$/m);
    assert.equal(statSync(join(data, 'matrix-regservice.yaml')).mode & 0o777, 0o600);
    const patched = parse(readFileSync(join(data, 'homeserver.yaml'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual(patched.app_service_config_files, [join(data, 'matrix-regservice.yaml')]);
    assert.equal(patched.enable_registration, false);
    assert.equal(existsSync(join(home, 'run.sh')), false, 'the image runs the config file, no run.sh');
  });

  it("doctor with the homeserver down says so once, and skips what would fail for the same reason; -v prints the version as Go's did", async () => {
    const dir = tempDir('regservice-doctor-down-');
    assert.equal((await run(['genconfig', '--matrixdomain', 'example.org', '--matrixurl', 'http://127.0.0.1:1'], dir)).code, 0);
    const viaRunSh = await new Promise<{ code: number; stdout: string }>((resolve) =>
      execFile(join(dir, 'run.sh'), ['doctor'], { cwd: dir, timeout: 60_000 }, (error, stdout) =>
        resolve({ code: error === null ? 0 : Number((error as { code?: number }).code), stdout }),
      ),
    );
    assert.equal(viaRunSh.code, 1);
    assert.equal(viaRunSh.stdout.match(/^FAIL/gm)?.length, 1, viaRunSh.stdout);
    assert.match(viaRunSh.stdout, /^FAIL {2}homeserver http:\/\/127\.0\.0\.1:1 reachable: .*ECONNREFUSED/m);
    assert.match(
      viaRunSh.stdout,
      /^skip {2}the backend's secret, the as_token and the application-service ping: not checked: the homeserver is unreachable$/m,
    );
    const version = await run(['-v']);
    assert.equal(version.code, 0);
    assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
  });

  it('rejects an unknown flag', async () => {
    const result = await run(['--matrixdomian', 'x']);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /unknown option '--matrixdomian'/);
  });

  it('runs until SIGTERM and exits 0; warns about a secret on argv', async (t) => {
    const { args } = deployment();
    const port = await freePort();
    const daemon = spawnDaemon(t, BIN, [...args, '--port', String(port), '--hstoken', 'argv-hs-token']);
    await waitUntilListening(daemon, `http://127.0.0.1:${port}/regapp/1`);
    assert.equal(await daemon.stop('SIGTERM'), 0);
    const count = await run([...args, 'users', 'count']);
    assert.equal(count.code, 0, count.stderr);
    assert.equal(count.stdout, '0\n');
    assert.doesNotMatch(count.stderr, /snapshot/, 'a stopped service leaves the database to read directly');
    assert.match(daemon.output(), /--hstoken was given on the command line/);
    assert.doesNotMatch(daemon.output(), /argv-hs-token/);
  });

  it('refuses a second instance on the same datapath, and a port in use, with a clear message', async (t) => {
    const { args } = deployment();
    const port = await freePort();
    const first = spawnDaemon(t, BIN, [...args, '--port', String(port)]);
    await waitUntilListening(first, `http://127.0.0.1:${port}/regapp/1`);

    const second = await run([...args, '--port', String(await freePort())]);
    assert.equal(second.code, 1);
    assert.match(second.stderr, /database .* is in use by another process/);

    const { args: otherArgs } = deployment();
    const samePort = await run([...otherArgs, '--port', String(port)]);
    assert.equal(samePort.code, 1);
    assert.match(samePort.stderr, /cannot listen on 127\.0\.0\.1:\d+: the address is already in use/);

    assert.equal(await first.stop('SIGINT'), 0);
  });

  it('genconfig carries the settings of --config FILE into run.sh, and ignores MATRIX_REGSERVICE_CONFIG with a warning', async () => {
    const dir = tempDir('regservice-gen-config-');
    writeFileSync(
      join(dir, 'regservice.yaml'),
      'matrixdomain: example.org\naccounts_per_day: 77\nallow_list: allow.txt\nlogin_after_register: yes\n',
      {
        mode: 0o600,
      },
    );
    const given = await run(['genconfig', '--config', join(dir, 'regservice.yaml'), '--out', join(dir, 'a')], dir);
    assert.equal(given.code, 0, given.stderr);
    const runSh = readFileSync(join(dir, 'a', 'run.sh'), 'utf8');
    assert.match(runSh, /--accounts-per-day 77 /);
    assert.match(runSh, /--login-after-register /, 'yes is true, as the daemon reads it');
    assert.match(runSh, new RegExp(`--allow-list ${join(dir, 'allow.txt')} `), "a path relative to the config file's directory");

    const fromEnvironment = await new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile(
        BIN,
        ['genconfig', '--matrixdomain', 'example.org', '--out', join(dir, 'b')],
        { cwd: dir, timeout: 60_000, env: { ...process.env, MATRIX_REGSERVICE_CONFIG: join(dir, 'regservice.yaml') } },
        (error, _stdout, stderr) => resolve({ code: error === null ? 0 : Number((error as { code?: number }).code), stderr }),
      );
    });
    assert.equal(fromEnvironment.code, 0, fromEnvironment.stderr);
    assert.match(fromEnvironment.stderr, /warning: MATRIX_REGSERVICE_CONFIG is set in genconfig's environment and is not carried/);
    assert.doesNotMatch(readFileSync(join(dir, 'b', 'run.sh'), 'utf8'), /--accounts-per-day/);
  });

  it("genconfig with --sharesecret-file proceeds when Synapse's registration_shared_secret_path cannot be read, and says so", async () => {
    const dir = tempDir('regservice-gen-secret-');
    writeFileSync(join(dir, 'secret'), 'the-operators-secret\n', { mode: 0o600 });
    writeFileSync(join(dir, 'homeserver.yaml'), 'server_name: example.org\nregistration_shared_secret_path: /nonexistent/shared_secret\n');
    const answer = await run(['genconfig', '--sharesecret-file', join(dir, 'secret'), '--out', join(dir, 'out')], dir);
    assert.equal(answer.code, 0, answer.stderr);
    assert.match(
      answer.stderr,
      /warning: cannot read sharesecret-file \/nonexistent\/shared_secret: ENOENT \(from Synapse's configuration .*\); sharesecret-file \S+secret is used, unchecked against it/,
    );
    assert.match(readFileSync(join(dir, 'out', 'run.sh'), 'utf8'), new RegExp(`--sharesecret-file ${join(dir, 'secret')} `));
  });

  it('users show refuses what is not an address, and store copy names --from when there is no registry there', async () => {
    const notAddress = await run(['users', 'show', 'nothex', '--datapath', tempDir('regservice-users-')]);
    assert.equal(notAddress.code, 2);
    assert.match(notAddress.stderr, /not a node address: "nothex" \(0x and 40 hex digits\)/);
    const copy = await run(['store', 'copy', '--from', '/nonexistent/datapath', '--to', 'postgresql://rs@127.0.0.1:1/rs?sslmode=disable']);
    assert.equal(copy.code, 1);
    assert.match(copy.stderr, /there is no LevelDB registry at \/nonexistent\/datapath: is --from right\?/);
  });

  it('users list | head -1 stops quietly: exit 0, no stack trace, the snapshot and the store closed', async () => {
    const datapath = tempDir('regservice-users-pipe-');
    const store = await openLevelStore(datapath);
    for (let n = 0; n < 3000; n++) {
      const localpart = `0x${n.toString(16).padStart(40, '0')}`;
      await store.nodes.put({ localpart, userId: `@${localpart}:example.org`, displayname: 'x', registeredAt: '2026-01-01T00:00:00.000Z' });
    }
    await store.close();
    const piped = await new Promise<{ stdout: string; stderr: string }>((resolve) => {
      execFile(
        'bash',
        ['-c', `"$0" users list --datapath "$1" | head -n 1; echo "status \${PIPESTATUS[0]}"`, BIN, datapath],
        { timeout: 60_000 },
        (_error, stdout, stderr) => resolve({ stdout, stderr }),
      );
    });
    assert.match(piped.stdout, /^address +registered +last seen\nstatus 0\n$/);
    assert.doesNotMatch(piped.stderr, /EPIPE|at .*\.js/);
    const reopened = await openLevelStore(datapath); // the lock was let go
    await reopened.close();
  });

  it("genconfig for gates behind the operator's own server block: the location and the upstream file, or a refusal naming what is missing", async () => {
    const dir = tempDir('regservice-gen-gates-');
    const common = ['genconfig', '--matrixdomain', 'example.org', '--database', 'postgresql://regservice@db.example.org/regservice'];
    const gates = ['--upstream', '10.0.0.1:8009', '--upstream', '10.0.0.2:8009'];
    const snippet = join(dir, 'location.conf');
    const upstream = join(dir, 'gates.conf');
    const missing = await run([...common, ...gates, '--nginx-location', snippet, '--out', join(dir, 'a')], dir);
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(missing.stderr, /--upstream with --nginx-location: give --nginx-upstream FILE too/);
    const alone = await run([...common, '--nginx-location', snippet, '--nginx-upstream', upstream, '--out', join(dir, 'b')], dir);
    assert.equal(alone.code, 2, alone.stderr);
    assert.match(alone.stderr, /--nginx-upstream writes the upstream block of several gates/);
    const loopback = await run(
      [
        ...common,
        ...gates,
        '--matrixurl',
        'http://127.0.0.1:8008',
        '--nginx-location',
        snippet,
        '--nginx-upstream',
        upstream,
        '--out',
        join(dir, 'c'),
      ],
      dir,
    );
    assert.equal(loopback.code, 0, loopback.stderr);
    assert.match(
      loopback.stderr,
      /warning: --matrixurl http:\/\/127\.0\.0\.1:8008\/? is loopback: the gate at 10\.0\.0\.1:8009 cannot reach Synapse/,
    );
    assert.match(readFileSync(snippet, 'utf8'), /proxy_pass http:\/\/matrix_regservice;/);
    assert.match(
      readFileSync(upstream, 'utf8'),
      /upstream matrix_regservice \{\n {4}server 10\.0\.0\.1:8009;\n {4}server 10\.0\.0\.2:8009;\n\}/,
    );
    const reached = await run(
      [
        ...common,
        ...gates,
        '--matrixurl',
        'http://10.0.0.1:8008',
        '--host',
        '0.0.0.0',
        '--trusted-proxies',
        'loopback,10.0.0.1',
        '--nginx-location',
        snippet,
        '--nginx-upstream',
        upstream,
        '--out',
        join(dir, 'd'),
        '--force',
      ],
      dir,
    );
    assert.equal(reached.code, 0, reached.stderr);
    assert.doesNotMatch(reached.stderr, /warning/);
    const both = await run(
      [
        ...common,
        ...gates,
        '--nginx',
        join(dir, 'site.conf'),
        '--nginx-location',
        snippet,
        '--nginx-upstream',
        upstream,
        '--out',
        join(dir, 'e'),
      ],
      dir,
    );
    assert.equal(both.code, 2, both.stderr);
    assert.match(both.stderr, /--nginx writes a whole site with the gates' upstream in it/);
  });

  it('genconfig refuses to overwrite without --force', async () => {
    const dir = tempDir('regservice-gen-');
    assert.equal((await run(['genconfig', '--matrixdomain', 'example.org'], dir)).code, 0);
    const again = await run(['genconfig', '--matrixdomain', 'example.org'], dir);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /refusing to overwrite .*--force/);
    assert.equal(
      (await run(['--matrixdomain', 'example.org', 'genconfig', '--force'], dir)).code,
      0,
      'global flags before the command work too',
    );
  });
});

describe('the built CLI with a damaged database', () => {
  it('exits 1 naming the corrupt database and what to do, without a stack trace', async (t) => {
    const { args, dir } = deployment();
    const port = await freePort();
    const daemon = spawnDaemon(t, BIN, [...args, '--port', String(port)]);
    await waitUntilListening(daemon, `http://127.0.0.1:${port}/regapp/1`);
    assert.equal(await daemon.stop(), 0);
    const store = join(dir, 'data', 'regservice.leveldb');
    for (const file of readdirSync(store)) if (file.startsWith('MANIFEST-')) writeFileSync(join(store, file), 'not a manifest');
    const result = await run([...args, '--port', String(await freePort())]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /the database .*regservice\.leveldb is corrupt .*restore it from a backup, or move it away/);
    assert.doesNotMatch(result.stderr, /\n\s+at /);
  });

  it('exits 1 naming a bad allow list', async () => {
    const { args, dir } = deployment();
    writeFileSync(join(dir, 'allow'), '0xnothex\n');
    const result = await run([...args, '--allow-list', join(dir, 'allow')]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /allow line 1: not an address/);
  });

  it('refuses at start, with exit 2 and the chmod line, a registration, secret, config or list that others may write', async () => {
    const { args, dir } = deployment();
    chmodSync(join(dir, 'registration.yaml'), 0o666);
    const registration = await run([...args]);
    assert.equal(registration.code, 2, registration.stderr);
    assert.match(
      registration.stderr,
      new RegExp(`registration ${join(dir, 'registration.yaml')} is writable by every user \\(mode 666\\).*chmod o-w `),
    );
    chmodSync(join(dir, 'registration.yaml'), 0o600);

    const open = join(dir, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777); // world-writable, no sticky bit
    writeFileSync(join(open, 'secret'), 'a-shared-secret\n', { mode: 0o600 });
    const secret = await run([...args.filter((_, index) => index !== 3 && index !== 2), '--sharesecret-file', join(open, 'secret')]);
    assert.equal(secret.code, 2, secret.stderr);
    assert.match(
      secret.stderr,
      new RegExp(
        `sharesecret-file ${join(open, 'secret')} is in ${open}, which every user may write without the sticky bit.*chmod o-w ${open}`,
      ),
    );

    writeFileSync(join(dir, 'allow'), '', { mode: 0o666 });
    chmodSync(join(dir, 'allow'), 0o666);
    const list = await run([...args, '--allow-list', join(dir, 'allow')]);
    assert.equal(list.code, 2, list.stderr);
    assert.match(list.stderr, /address list \S+allow is writable by every user \(mode 666\).*chmod o-w/);
  });
});
