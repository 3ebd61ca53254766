import { strict as assert } from 'node:assert';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from '../support/timedTests.js';
import { tempDir } from '../support/tempDir.js';
import { normalizeHomeserverUrl } from '../../src/config/homeserverUrl.js';
import { loadSettings } from '../../src/config/loadSettings.js';
import {
  COMMAND_LINE,
  PRIMARY_DESCRIPTORS,
  type RawSettings,
  defaultWorkers,
  describeDefault,
  resolveSettings,
  SettingsError,
  type SettingsLayer,
} from '../../src/config/settings.js';
import { envName, OPTION_SPECS } from '../../src/config/options.js';
import { sharedSettingDifferences, sharedSettingsOf } from '../../src/config/sharedSettings.js';
import { databaseUrlProblem, describeDatabaseUrl, urlHasPassword, urlSecrets } from '../../src/config/databaseUrl.js';
import { defaultMaxConnections, openFileLimitIn, RESERVED_DESCRIPTORS } from '../../src/config/openFileLimit.js';

const required = { matrixdomain: 'example.org', sharesecret: 'sss', astoken: 'aaaa', hstoken: 'hhhh' };

function problemsOf(run: () => unknown): readonly string[] {
  try {
    run();
  } catch (error) {
    if (error instanceof SettingsError) return error.problems;
    throw error;
  }
  assert.fail('expected a SettingsError');
}

describe('normalizeHomeserverUrl', () => {
  it('keeps a base URL and drops a trailing slash', () => {
    assert.deepEqual(normalizeHomeserverUrl('http://127.0.0.1:8008/'), { baseUrl: 'http://127.0.0.1:8008' });
    assert.deepEqual(normalizeHomeserverUrl('https://hs.example.org/prefix'), { baseUrl: 'https://hs.example.org/prefix' });
  });
  it("reduces the Go original's full endpoint forms to the base URL", () => {
    for (const path of ['/_synapse/admin/v1/register', '/_matrix/client/api/v1/admin/register', '/_matrix/client/api/v1/createUser']) {
      const input = `http://localhost:8008${path}`;
      assert.deepEqual(normalizeHomeserverUrl(input), { baseUrl: 'http://localhost:8008', reducedFrom: input });
    }
  });
  it('rejects what is not an http(s) URL', () => {
    assert.throws(() => normalizeHomeserverUrl('localhost:8008'), /http/);
    assert.throws(() => normalizeHomeserverUrl('not a url'), /not a URL/);
    assert.throws(() => normalizeHomeserverUrl('http://h/?x=1'), /query/);
  });
});

describe('resolveSettings', () => {
  it("has the Go original's defaults", () => {
    const { settings, warnings } = resolveSettings([{ source: 'config', values: required }]);
    assert.equal(settings.host, '127.0.0.1');
    assert.equal(settings.port, 8009);
    assert.equal(settings.datapath, '.matrix');
    assert.equal(settings.homeserverUrl, 'http://127.0.0.1:8008');
    assert.equal(settings.verbosity, 3);
    assert.equal(settings.basePath, '/regapp/1');
    assert.equal(settings.homeserverTimeoutMs, 30_000);
    assert.equal(settings.loginAfterRegister, false);
    assert.deepEqual(warnings, []);
  });

  it('lets earlier layers win', () => {
    const layers: SettingsLayer[] = [
      { source: COMMAND_LINE, values: { port: '9001' } },
      { source: 'environment', values: { port: '9002', host: '0.0.0.0' } },
      { source: 'config', values: { ...required, port: 9003, host: '::1', verbosity: 5 } },
    ];
    const { settings } = resolveSettings(layers);
    assert.equal(settings.port, 9001);
    assert.equal(settings.host, '0.0.0.0');
    assert.equal(settings.verbosity, 5);
  });

  it('reports every bad value at once, each with its source', () => {
    const problems = problemsOf(() =>
      resolveSettings([
        {
          source: COMMAND_LINE,
          values: { port: '80x', verbosity: '9', matrixurl: 'ftp://x', 'homeserver-timeout': '0', 'login-after-register': 'maybe' },
        },
        { source: 'config', values: { matrixdomain: 'bad domain!' } },
      ]),
    );
    const text = problems.join('\n');
    assert.match(text, /port \(from command line\) must be a whole number from 1 to 65535, got "80x"/);
    assert.match(text, /verbosity .* from 0 to 5, got "9"/);
    assert.match(text, /matrixurl \(from command line\): must be http/);
    assert.match(text, /homeserver-timeout .* from 1 to 3600/);
    assert.match(text, /login-after-register .* true or false/);
    assert.match(text, /matrixdomain must be a server name/);
    assert.match(text, /sharesecret is required/);
    assert.match(text, /astoken is required/);
    assert.match(text, /hstoken is required/);
  });

  it('requires what the chosen backend needs, and only that', () => {
    const base = { matrixdomain: 'example.org', astoken: 'aaaa', hstoken: 'hhhh' };
    assert.equal(resolveSettings([{ source: 'c', values: { ...base, backend: 'appservice' } }]).settings.backend, 'appservice');
    assert.match(
      problemsOf(() => resolveSettings([{ source: 'c', values: { ...base, backend: 'admin-api' } }])).join('\n'),
      /admin-token is required.*--admin-token-file/,
    );
    assert.match(
      problemsOf(() => resolveSettings([{ source: 'c', values: { ...base, backend: 'ldap' } }])).join('\n'),
      /backend must be one of shared-secret, admin-api, appservice, got "ldap"/,
    );
    assert.match(
      problemsOf(() => resolveSettings([{ source: 'c', values: { ...required, 'allow-password-reset': true } }])).join('\n'),
      /allow-password-reset needs --backend admin-api/,
    );
    assert.match(
      problemsOf(() =>
        resolveSettings([{ source: 'c', values: { ...base, backend: 'admin-api', 'admin-token': 't', 'login-after-register': 'true' } }]),
      ).join('\n'),
      /login-after-register works with the shared-secret backend/,
    );
  });

  it('needs no secrets when asked not to (genconfig)', () => {
    const { settings } = resolveSettings([{ source: 'cli', values: { matrixdomain: 'example.org:8448' } }], { requireSecrets: false });
    assert.equal(settings.serverName, 'example.org:8448');
    assert.equal(settings.sharedSecret, '');
  });

  it('warns about secrets on the command line and about legacy endpoint URLs', () => {
    const { warnings, settings } = resolveSettings([
      { source: COMMAND_LINE, values: { sharesecret: 'sss', matrixurl: 'http://hs:8008/_synapse/admin/v1/register' } },
      { source: 'environment', values: required },
    ]);
    assert.equal(settings.homeserverUrl, 'http://hs:8008');
    assert.ok(warnings.some((warning) => /--sharesecret .*command line.*other local users/.test(warning)));
    assert.ok(warnings.some((warning) => /names an endpoint/.test(warning)));
    assert.ok(!warnings.some((warning) => /--astoken/.test(warning)), 'tokens from the environment are not on argv');
  });
});

describe('settings checked before start', () => {
  it('refuses listen addresses, trusted proxies and worker counts it cannot use, naming each', () => {
    const problems = problemsOf(() =>
      resolveSettings([
        {
          source: COMMAND_LINE,
          values: {
            ...required,
            host: 'bad host',
            'metrics-host': 'x;y',
            'trusted-proxies': 'loopback,bogus',
            workers: -1,
            'rate-limit-ipv6-prefix': 16,
          },
        },
      ]),
    ).join('\n');
    assert.match(problems, /host must be an IP address or a host name, got "bad host"/);
    assert.match(problems, /metrics-host must be an IP address or a host name, got "x;y"/);
    assert.match(problems, /trusted-proxies must be comma-separated addresses, CIDRs/);
    assert.match(problems, /workers \(from command line\) must be a whole number from 0 to 1024/);
    assert.match(problems, /rate-limit-ipv6-prefix \(from command line\) must be a whole number from 32 to 128/);
    const fine = resolveSettings([
      {
        source: COMMAND_LINE,
        values: { ...required, host: '::1', 'metrics-host': 'localhost', 'trusted-proxies': 'loopback, 10.0.0.0/8' },
      },
    ]);
    assert.equal(fine.settings.host, '::1');
  });
});

describe('loadSettings', () => {
  const dir = tempDir('regservice-settings-');
  const secretFile = join(dir, 'secret');
  writeFileSync(secretFile, 'from-file\n', { mode: 0o600 });
  const registrationFile = join(dir, 'registration.yaml');
  writeFileSync(
    registrationFile,
    'id: regapp\nurl: http://localhost:8009/custom/path\nas_token: AS-TOKEN\nhs_token: HS-TOKEN\n' +
      "namespaces: {users: [{exclusive: false, regex: '^@0x[0-9a-f]{40}:example\\.org$'}]}\n",
    { mode: 0o600 },
  );

  it('reads the shared secret and the tokens from the files named, and the base path from the registration url', () => {
    const { settings, warnings } = loadSettings({
      commandLine: { matrixdomain: 'example.org', 'sharesecret-file': secretFile, registration: registrationFile },
      environment: {},
    });
    assert.equal(settings.sharedSecret, 'from-file');
    assert.equal(settings.sharedSecretFile, secretFile);
    assert.equal(settings.asToken, 'AS-TOKEN');
    assert.equal(settings.hsToken, 'HS-TOKEN');
    assert.equal(settings.appserviceId, 'regapp');
    assert.equal(settings.basePath, '/custom/path');
    assert.deepEqual(warnings, []);
  });

  it("refuses a registration whose namespace is not Photon nodes', or exclusive for a backend Synapse then refuses", () => {
    const namespaced = (name: string, users: string): string => {
      const file = join(dir, name);
      writeFileSync(file, `id: other\nurl: http://localhost:8009/regapp/1\nas_token: A\nhs_token: H\nnamespaces: {users: [${users}]}\n`, {
        mode: 0o600,
      });
      return file;
    };
    const load =
      (registration: string, backend = 'shared-secret') =>
      () =>
        loadSettings({
          commandLine: {
            matrixdomain: 'example.org',
            'sharesecret-file': secretFile,
            registration,
            backend,
            'admin-token-file': secretFile,
          },
          environment: {},
        });
    const bridge = namespaced('bridge.yaml', "{exclusive: true, regex: '@telegram_.*:example\\.org'}");
    assert.throws(load(bridge), new RegExp(`registration ${bridge}: its user namespace \\(@telegram_.*\\) does not take in Photon nodes`));
    const exclusive = namespaced('exclusive.yaml', "{exclusive: true, regex: '^@0x[0-9a-f]{40}:example\\.org$'}");
    assert.throws(load(exclusive), /its user namespace is exclusive, and Synapse refuses shared-secret registrations .*M_EXCLUSIVE/);
    assert.throws(load(exclusive, 'admin-api'), /Synapse refuses admin-api registrations/);
    assert.deepEqual(load(exclusive, 'appservice')().warnings, []);
    assert.match(load(registrationFile, 'appservice')().warnings.join('\n'), /not exclusive: other clients could take/);
  });

  it('reads a YAML config file with paths relative to it; flags still win', () => {
    const config = join(dir, 'config.yaml');
    writeFileSync(
      config,
      'matrixdomain: example.org\nport: 9100\nsharesecret_file: secret\nregistration: registration.yaml\nverbosity: 4\n',
    );
    const { settings } = loadSettings({ commandLine: { verbosity: '1' }, environment: { port: '9200' }, configFile: config });
    assert.equal(settings.port, 9200);
    assert.equal(settings.verbosity, 1);
    assert.equal(settings.sharedSecret, 'from-file');
  });

  it('names unknown keys, unreadable files and a secret given twice', () => {
    const config = join(dir, 'bad.yaml');
    writeFileSync(config, 'matrixdomain: example.org\nshare_secret: x\n');
    const problems = problemsOf(() =>
      loadSettings({
        commandLine: { sharesecret: 'a', 'sharesecret-file': secretFile, registration: join(dir, 'missing.yaml') },
        environment: {},
        configFile: config,
      }),
    ).join('\n');
    assert.match(problems, /unknown setting "share_secret"/);
    assert.match(problems, /cannot read registration .*missing\.yaml: ENOENT/);
    assert.match(problems, /both sharesecret and sharesecret-file/);
  });

  it('names the line and column of a YAML syntax error in a file holding secrets, never its text', () => {
    const broken = join(dir, 'broken-registration.yaml');
    writeFileSync(broken, 'id: regapp\nurl: http://localhost:8009/regapp/1\nas_token: AS-SECRET-1\nhs_token: HS-SECRET-2: oops\n', {
      mode: 0o600,
    });
    const config = join(dir, 'broken-config.yaml');
    writeFileSync(config, 'matrixdomain: example.org\nsharesecret: CONFIG-SECRET-3: oops\n');
    const problems = problemsOf(() => loadSettings({ commandLine: { registration: broken }, environment: {}, configFile: config })).join(
      '\n',
    );
    assert.match(problems, /registration .*broken-registration\.yaml is not valid YAML at line 4, column 11 \(/);
    assert.match(problems, /config file .*broken-config\.yaml is not valid YAML at line 2, column 14 \(/);
    for (const secret of ['AS-SECRET-1', 'HS-SECRET-2', 'CONFIG-SECRET-3']) assert.doesNotMatch(problems, new RegExp(secret));
  });

  it('warns when a secret file is readable by others', () => {
    const loose = join(dir, 'loose-secret');
    writeFileSync(loose, 'x');
    chmodSync(loose, 0o644);
    const { warnings } = loadSettings({
      commandLine: { matrixdomain: 'example.org', 'sharesecret-file': loose, registration: registrationFile },
      environment: {},
    });
    assert.ok(warnings.some((warning) => /readable by other users \(mode 644\)/.test(warning)));
  });
});

describe('database URLs', () => {
  it('treat ?password= and ?sslpassword= as the password in the userinfo is: masked, found, warned of', () => {
    const url = 'postgresql://regservice@db.example.org/regservice?sslmode=require&password=hunter2&sslpassword=key%20pass';
    assert.equal(
      describeDatabaseUrl(url),
      'postgresql://regservice@db.example.org/regservice?sslmode=require&password=***&sslpassword=***',
    );
    assert.equal(describeDatabaseUrl('postgresql://u:hunter2@h/d'), 'postgresql://u:***@h/d');
    assert.deepEqual(urlSecrets(url).sort(), ['hunter2', 'key pass']);
    assert.equal(urlHasPassword('postgresql://u@h/d?sslmode=disable'), false);
    const { warnings } = resolveSettings([
      { source: COMMAND_LINE, values: { matrixdomain: 'hs', sharesecret: 's', astoken: 'a', hstoken: 'h', database: url } },
    ]);
    assert.ok(warnings.some((warning) => /--database has a password or another secret in it/.test(warning)));
    assert.ok(warnings.every((warning) => !warning.includes('hunter2')));
  });

  it('refuse a passfile, which node-postgres would silently ignore', () => {
    assert.match(String(databaseUrlProblem('postgresql://u@h/d?passfile=/home/u/.pgpass')), /does not read: .*--database-password-file/);
  });

  it('name the setting of a URL with a broken %-escape, never its password', () => {
    const url = 'postgresql://u:%zzpw@127.0.0.1/db';
    assert.throws(
      () =>
        resolveSettings([
          { source: 'environment', values: { matrixdomain: 'hs', sharesecret: 's', astoken: 'a', hstoken: 'h', database: url } },
        ]),
      (error: unknown) =>
        error instanceof SettingsError &&
        /database postgresql:\/\/u:\*\*\*@127\.0\.0\.1\/db has a % that is not followed by two hex digits/.test(error.message) &&
        !error.message.includes('zzpw'),
    );
  });
});

describe("the README's settings", () => {
  it('names every setting by its flag, its environment variable and its default', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const rows = readme.split('\n').filter((line) => line.startsWith('| `--'));
    for (const { key } of OPTION_SPECS) {
      const row = rows.find((line) => line.startsWith(`| \`--${key}\` `) || line.startsWith(`| \`--${key} <`));
      assert.ok(row !== undefined, `a table row for --${key}`);
      assert.ok(row.includes(`\`${envName(key)}\``), `--${key}'s row names ${envName(key)}`);
      const shown = describeDefault(key);
      if (shown !== undefined && !['workers', 'pending-lease'].includes(key))
        assert.ok(
          row.includes(`\`${shown}\``) || (shown === 'off' && row.includes('| off |')),
          `--${key}'s row shows its default ${shown}: ${row}`,
        );
    }
  });
});

describe('the settings gates sharing one database must agree on', () => {
  it('are listed in the README as the options table marks them, and compared value by value', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const listed = /<!-- shared settings -->([^]*?)<!-- \/shared settings -->/.exec(readme)?.[1] ?? '';
    const named = [...listed.matchAll(/`--([a-z0-9-]+)`/g)].map((match) => match[1]);
    const marked = OPTION_SPECS.filter((spec) => 'shared' in spec && spec.shared).map((spec) => spec.key);
    assert.deepEqual(named, marked);
    const { settings } = resolveSettings([{ source: 't', values: { matrixdomain: 'hs.example.org', 'rate-limit-client': 10 } }], {
      requireSecrets: false,
    });
    const here = sharedSettingsOf(settings);
    assert.deepEqual(Object.keys(here).sort(), [...marked].sort());
    const differences = sharedSettingDifferences(here, [
      { gate: 'b:8009', settings: { ...here, 'rate-limit-client': '20' } },
      { gate: 'c:8009', settings: { matrixdomain: 'hs.example.org' } }, // an older gate, which knows fewer settings
    ]);
    assert.deepEqual(differences, [{ key: 'rate-limit-client', here: '10', gate: 'b:8009', there: '20' }]);
  });
});

describe('worker processes by default (--workers)', () => {
  it('are one per core beside the primary, which serves too: none (one process) on a machine with one core', () => {
    assert.equal(defaultWorkers(1), 0);
    assert.equal(defaultWorkers(2), 1);
    assert.equal(defaultWorkers(16), 15);
  });

  it("leave the primary's listener room for its homeserver sockets and store files beside its connections", () => {
    const values = { matrixdomain: 'hs', sharesecret: 's', astoken: 'a', hstoken: 'h' };
    const of = (more: RawSettings) => resolveSettings([{ source: 'test', values: { ...values, ...more } }]).settings;
    for (const workers of [0, 2]) {
      const { maxConnections, primaryMaxConnections } = of({ workers });
      assert.equal(primaryMaxConnections, Math.max(16, maxConnections - 32 - PRIMARY_DESCRIPTORS - workers));
      const fewerCalls = of({ workers, 'max-homeserver-calls': 8 });
      assert.equal(fewerCalls.primaryMaxConnections, Math.max(16, maxConnections - 8 - PRIMARY_DESCRIPTORS - workers));
    }
    const given = of({ workers: 0, 'max-connections': 500 });
    assert.deepEqual([given.maxConnections, given.primaryMaxConnections], [500, 500], 'as given');
  });
});

describe('connections a worker holds at most (--max-connections)', () => {
  it("defaults to the process's open-file limit less what a worker keeps for itself", () => {
    const limits = (soft: string) =>
      `Limit                     Soft Limit           Hard Limit           Units\nMax open files            ${soft}               524288               files\n`;
    assert.equal(openFileLimitIn(limits('1024')), 1024);
    assert.equal(openFileLimitIn(limits('unlimited')), undefined);
    const dir = tempDir('regservice-limits-');
    writeFileSync(join(dir, 'limits'), limits('300'));
    assert.equal(defaultMaxConnections(join(dir, 'limits')), 300 - RESERVED_DESCRIPTORS);
    writeFileSync(join(dir, 'limits'), limits('20'));
    assert.equal(defaultMaxConnections(join(dir, 'limits')), 16, 'never below 16');
    assert.equal(defaultMaxConnections(join(dir, 'missing')), 1024 - RESERVED_DESCRIPTORS, "where there is no /proc: Node's usual 1024");
  });
});
