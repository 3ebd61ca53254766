import { strict as assert } from 'node:assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, it } from '../support/timedTests.js';
import { tempDir } from '../support/tempDir.js';
import { parse } from 'yaml';
import { resolveSettings } from '../../src/config/settings.js';
import { parseRegistration } from '../../src/config/registrationFile.js';
import {
  defaultGenconfigInput,
  planGenconfig,
  readTemplate,
  renderSystemdUnit,
  writeGenconfig,
  type GenconfigInput,
} from '../../src/genconfig/genconfig.js';
import {
  registrationUrlThroughNginx,
  renderNginxSite,
  renderNginxSnippet,
  renderNginxUpstream,
  type NginxTemplates,
} from '../../src/genconfig/nginxSite.js';
import { gateWarnings } from '../../src/genconfig/gateWarnings.js';
import { renderTemplate, shellQuote } from '../../src/genconfig/template.js';
import { carriedSettings } from '../../src/genconfig/carriedSettings.js';
import { OPTION_SPECS } from '../../src/config/options.js';
import { containerFiles } from '../../src/container/containerDeployment.js';
import { checkNginxSite } from '../support/nginx.js';

const escapeForRegex = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function input(values: Record<string, string>, outDir = '/srv/regservice'): GenconfigInput {
  const { settings } = resolveSettings([{ source: 'test', values: { matrixdomain: 'transport01.example.org', ...values } }], {
    requireSecrets: false,
  });
  let counter = 0;
  return { ...defaultGenconfigInput(settings, outDir), now: new Date('2026-01-02T03:04:05Z'), randomToken: () => `token${++counter}` };
}

const fileNamed = (plan: ReturnType<typeof planGenconfig>, name: string) => {
  const file = plan.files.find((candidate) => candidate.name === name);
  assert.ok(file, `no ${name} in the plan`);
  return file;
};

/** How Synapse applies a namespace regex: Python's re.match. */
function synapseMatches(regex: string, userId: string): boolean {
  return (
    execFileSync('python3', ['-c', 'import re,sys; print(bool(re.match(sys.argv[1], sys.argv[2])))', regex, userId]).toString().trim() ===
    'True'
  );
}

describe('shellQuote and renderTemplate', () => {
  it('quotes anything a shell would expand', () => {
    assert.equal(shellQuote('/plain/path-1.2'), '/plain/path-1.2');
    assert.equal(shellQuote("it's $HOME"), `'it'\\''s $HOME'`);
    assert.equal(execFileSync('sh', ['-c', `printf %s ${shellQuote("a b'$(x)`")}`]).toString(), "a b'$(x)`");
  });
  it('refuses a placeholder without a value', () => {
    assert.throws(() => renderTemplate('{{A}} {{B}}', { A: 'x' }), /\{\{B\}\}/);
  });
});

describe('planGenconfig', () => {
  it('writes a registration with fresh tokens, the url of the listener and one non-exclusive Photon namespace', () => {
    const plan = planGenconfig(input({ host: '0.0.0.0', port: '8010' }));
    const registrationFile = fileNamed(plan, 'registration.yaml');
    assert.equal(registrationFile.mode, 0o600);
    const doc = parse(registrationFile.content) as Record<string, unknown>;
    assert.deepEqual(parseRegistration(registrationFile.content), {
      id: 'matrix-regservice-transport01.example.org',
      url: 'http://127.0.0.1:8010/regapp/1',
      as_token: 'token2',
      hs_token: 'token3',
      userRegexes: ['^@0x[0-9a-f]{40}:transport01\\.example\\.org$'],
      exclusiveUserRegexes: [],
    });
    assert.equal(doc.rate_limited, false);
    const users = (doc.namespaces as { users: { exclusive: boolean; regex: string }[] }).users;
    assert.equal(users.length, 1);
    assert.equal(users[0]?.exclusive, false);
    const regex = String(users[0]?.regex);
    const id = '@0x' + 'ab'.repeat(20) + ':transport01.example.org';
    assert.ok(synapseMatches(regex, id));
    for (const other of [
      '@alice:transport01.example.org',
      '@0x' + 'AB'.repeat(20) + ':transport01.example.org',
      id + '.evil',
      '@0x' + 'ab'.repeat(20) + ':transport01Xexample.org',
      '@0x' + 'ab'.repeat(20) + ':other.org',
    ]) {
      assert.ok(!synapseMatches(regex, other), `${other} must not match ${regex}`);
    }
  });

  it('writes run.sh that keeps secrets in files and points at absolute paths', () => {
    const plan = planGenconfig(input({ sharesecret: 'topsecret', port: '8011', datapath: '/var/lib/regservice' }));
    const run = fileNamed(plan, 'run.sh');
    assert.equal(run.mode, 0o755);
    assert.ok(run.content.startsWith('#!/bin/sh\n'));
    assert.ok(!run.content.includes('topsecret'));
    assert.ok(!run.content.includes('{{'));
    assert.match(run.content, /--registration \/srv\/regservice\/registration\.yaml/);
    assert.match(run.content, /--sharesecret-file \/srv\/regservice\/registration_shared_secret/);
    assert.match(run.content, /--datapath \/var\/lib\/regservice/);
    assert.match(run.content, /--port 8011/);
    assert.match(run.content, /"\$@"\n$/);
    assert.equal(fileNamed(plan, 'registration_shared_secret').content, 'topsecret\n');
    assert.equal(fileNamed(plan, 'registration_shared_secret').mode, 0o600);
    assert.doesNotMatch(plan.instructions, /registration_shared_secret_path/, 'Synapse already has this secret');
  });

  it('puts --database in run.sh with its password only through a file, and refuses a password in the URL', () => {
    const url = 'postgresql://regservice@db.example.org:5432/regservice?sslmode=verify-full';
    const plan = planGenconfig(
      input({ database: url, 'database-password': 'pw-in-file', 'database-password-source': '/etc/regservice/db password' }),
    );
    const run = fileNamed(plan, 'run.sh').content;
    assert.ok(run.includes(`  --database '${url}' \\\n`), run);
    assert.ok(run.includes(`  --database-password-file '/etc/regservice/db password' \\\n`), run);
    assert.doesNotMatch(run, /--datapath|pw-in-file/);
    for (const secretUrl of [
      'postgresql://regservice:hunter2@db.example.org/regservice',
      'postgresql://regservice@db.example.org/regservice?password=hunter2',
      'postgresql://regservice@db.example.org/regservice?sslmode=verify-full&sslpassword=hunter2',
    ]) {
      assert.throws(
        () => planGenconfig(input({ database: secretUrl })),
        (error: unknown) => error instanceof Error && /--database-password-file/.test(error.message) && !error.message.includes('hunter2'),
        secretUrl,
      );
    }
  });

  it('points the registration url at nginx when several gates share a database', () => {
    const plan = planGenconfig({ ...input({ port: '8011' }), registrationUrl: 'http://127.0.0.1:8080/regapp/1' });
    assert.match(fileNamed(plan, 'registration.yaml').content, /^url: http:\/\/127\.0\.0\.1:8080\/regapp\/1$/m);
  });

  it('points run.sh at an existing secret file instead of copying it', () => {
    const dir = tempDir('regservice-secret-');
    writeFileSync(join(dir, 'secret'), 'abc', { mode: 0o600 });
    const { settings } = resolveSettings(
      [{ source: 't', values: { matrixdomain: 'example.org', sharesecret: 'abc', 'sharesecret-source': join(dir, 'secret') } }],
      { requireSecrets: false },
    );
    const plan = planGenconfig({ ...defaultGenconfigInput(settings, dir), randomToken: () => 't' });
    assert.ok(!plan.files.some((file) => file.name === 'registration_shared_secret'));
    assert.match(fileNamed(plan, 'run.sh').content, new RegExp(`--sharesecret-file ${join(dir, 'secret')}`));
  });

  it('generates a shared secret when none is given and says how Synapse should read it', () => {
    const plan = planGenconfig(input({}));
    assert.equal(fileNamed(plan, 'registration_shared_secret').content, 'token1\n');
    assert.match(plan.instructions, /registration_shared_secret_path: \/srv\/regservice\/registration_shared_secret/);
    assert.match(plan.instructions, /enable_registration: false/);
    assert.match(plan.instructions, /app_service_config_files:\n {4}- \/srv\/regservice\/registration\.yaml/);
  });
});

describe('planGenconfig per backend', () => {
  it('appservice: an exclusive namespace, no shared secret, --backend appservice in run.sh', () => {
    const plan = planGenconfig(input({ backend: 'appservice' }));
    const doc = parse(fileNamed(plan, 'registration.yaml').content) as { namespaces: { users: { exclusive: boolean }[] } };
    assert.equal(doc.namespaces.users[0]?.exclusive, true);
    assert.ok(!plan.files.some((file) => file.name === 'registration_shared_secret'));
    const run = fileNamed(plan, 'run.sh').content;
    assert.match(run, /--backend appservice \\\n {2}--verbosity/);
    assert.doesNotMatch(run, /sharesecret/);
  });

  it('admin-api: needs the admin token file and points run.sh at it', () => {
    assert.throws(() => planGenconfig(input({ backend: 'admin-api' })), /admin-api backend needs --admin-token-file/);
    const { settings } = resolveSettings(
      [
        {
          source: 't',
          values: {
            matrixdomain: 'example.org',
            backend: 'admin-api',
            'admin-token': 'x',
            'admin-token-source': '/etc/rs/admin token',
            'allow-password-reset': true,
          },
        },
      ],
      { requireSecrets: false },
    );
    const plan = planGenconfig({ ...defaultGenconfigInput(settings, '/srv/rs'), randomToken: () => 't', appserviceId: 'custom-id' });
    const run = fileNamed(plan, 'run.sh').content;
    assert.match(run, /--admin-token-file '\/etc\/rs\/admin token' \\\n {2}--allow-password-reset \\\n/);
    assert.equal(parseRegistration(fileNamed(plan, 'registration.yaml').content).id, 'custom-id');
    const doc = parse(fileNamed(plan, 'registration.yaml').content) as { namespaces: { users: { exclusive: boolean }[] } };
    assert.equal(doc.namespaces.users[0]?.exclusive, false);
  });
});

const templates: NginxTemplates = {
  site: readTemplate('nginx-site.conf.template'),
  location: readTemplate('nginx-location.conf.template'),
  snippet: readTemplate('nginx-snippet.conf.template'),
  appservice: readTemplate('nginx-appservice.conf.template'),
  upstream: readTemplate('nginx-upstream.conf.template'),
  errors: readTemplate('nginx-errors.conf.template'),
};
const plainSite = { upstreams: [], publicPort: 80, publicName: 'hs.example.org', appservicePort: 8019 };

/** nginx -t on a rendered site (or, for a snippet, a server block including it). */
/** nginx -t on a site, or on a snippet included in an operator's server block (with an http-level file beside it). */
function nginxAccepts(text: string, asSnippet = false, httpLevel = ''): void {
  if (spawnSync('nginx', ['-v']).error !== undefined && process.env.CI !== 'true') return; // nginx not installed here
  const dir = tempDir('regservice-nginx-t-');
  const file = join(dir, asSnippet ? 'snippet.conf' : 'site.conf');
  writeFileSync(file, text);
  if (asSnippet) {
    writeFileSync(
      join(dir, 'site.conf'),
      `${httpLevel}\nserver {\n  listen 8081;\n  server_name hs.example.org;\n  location /_matrix { proxy_pass http://127.0.0.1:8008; }\n  include ${file};\n}\n`,
    );
  }
  const check = checkNginxSite(dir, join(dir, 'site.conf'));
  assert.ok(check.ok, check.output);
}

describe('nginx site and systemd unit', () => {
  it('render every placeholder for the deployment; only /register is public, with its 4k limit', () => {
    const { settings } = resolveSettings(
      [{ source: 't', values: { matrixdomain: 'hs.example.org:8448', matrixurl: 'http://127.0.0.1:8008/', port: 8010 } }],
      { requireSecrets: false },
    );
    const now = new Date('2026-01-01T00:00:00Z');
    const nginx = renderNginxSite(templates, settings, plainSite, now);
    assert.doesNotMatch(nginx, /\{\{/);
    assert.match(nginx, /listen 80;\n {4}listen \[::\]:80;/);
    assert.doesNotMatch(nginx, /ssl/);
    assert.match(nginx, /server_name hs\.example\.org;/);
    assert.match(nginx, /location ~ \^\(\/_matrix\|\/_synapse\/client\) \{\n\s+proxy_pass http:\/\/127\.0\.0\.1:8008;/);
    assert.match(nginx, /location = \/regapp\/1\/register \{\n\s+proxy_pass http:\/\/127\.0\.0\.1:8010;/);
    assert.match(nginx, /proxy_set_header X-Forwarded-For \$remote_addr;\n\s+client_max_body_size 4k;/);
    assert.doesNotMatch(nginx, /location \/regapp\/1\/ /, 'the application-service routes are not public');
    nginxAccepts(nginx);
    const unit = renderSystemdUnit(
      readTemplate('matrix-regservice.service.template'),
      settings,
      { user: 'regsvc', runScript: '/srv/rs/run.sh' },
      now,
    );
    assert.doesNotMatch(unit, /\{\{/);
    assert.match(unit, /^User=regsvc$/m);
    assert.match(unit, /^ExecStart=\/srv\/rs\/run\.sh$/m);
    assert.match(unit, new RegExp(`^ReadWritePaths=${resolve('.matrix')}$`, 'm'));
    assert.match(unit, /^LimitNOFILE=8192$/m, 'room for --max-connections connections per worker');
  });

  it('with --database names no datapath in ReadWritePaths=: one never made would keep the unit from starting', () => {
    const { settings } = resolveSettings(
      [{ source: 't', values: { matrixdomain: 'hs.example.org', database: 'postgresql://rs@db/rs', logfile: '/var/log/rs/rs.log' } }],
      { requireSecrets: false },
    );
    const unit = renderSystemdUnit(
      readTemplate('matrix-regservice.service.template'),
      settings,
      { user: 'rs', runScript: '/srv/rs/run.sh' },
      new Date(),
    );
    assert.doesNotMatch(unit, /\{\{/);
    assert.match(unit, /^ReadWritePaths=\/var\/log\/rs$/m);
    assert.match(unit, /useradd --system --home-dir \/nonexistent /);
    assert.doesNotMatch(unit, /\.matrix/);
  });

  it('speaks TLS when given a certificate and key, whatever the port', () => {
    const { settings } = resolveSettings([{ source: 't', values: { matrixdomain: 'hs.example.org' } }], { requireSecrets: false });
    const tls = { certificate: '/etc/letsencrypt/live/hs/fullchain.pem', key: '/etc/letsencrypt/live/hs/privkey.pem' };
    const nginx = renderNginxSite(templates, settings, { ...plainSite, publicPort: 443, tls }, new Date());
    assert.match(nginx, /listen 443 ssl;\n {4}listen \[::\]:443 ssl;/);
    assert.match(
      nginx,
      /ssl_certificate \/etc\/letsencrypt\/live\/hs\/fullchain\.pem;\n {4}ssl_certificate_key \/etc\/letsencrypt\/live\/hs\/privkey\.pem;/,
    );
    const plain443 = renderNginxSite(templates, settings, { ...plainSite, publicPort: 443 }, new Date());
    assert.match(plain443, /listen 443;/, 'no certificate, no TLS: the port alone turns nothing on');
  });

  it('writes a location snippet to include in the server block the operator already has', () => {
    const { settings } = resolveSettings([{ source: 't', values: { matrixdomain: 'hs.example.org', port: 8010 } }], {
      requireSecrets: false,
    });
    const snippet = renderNginxSnippet(
      templates,
      settings,
      { upstreams: [], snippetPath: '/etc/nginx/snippets/regservice.conf' },
      new Date(),
    );
    assert.doesNotMatch(snippet, /\{\{|server \{|listen /);
    assert.match(snippet, /include \/etc\/nginx\/snippets\/regservice\.conf;/);
    assert.match(snippet, /location = \/regapp\/1\/register \{\n\s+proxy_pass http:\/\/127\.0\.0\.1:8010;/);
    nginxAccepts(snippet, true);
  });

  it('render an upstream block of every gate and a loopback server for Synapse without the 4k limit, which nginx -t accepts', () => {
    const { settings } = resolveSettings([{ source: 't', values: { matrixdomain: 'hs.example.org', port: 8010 } }], {
      requireSecrets: false,
    });
    const site = { ...plainSite, upstreams: ['127.0.0.1:8010', '10.0.0.2:8010', '[fd00::2]:8010'], publicPort: 8080, appservicePort: 8019 };
    const nginx = renderNginxSite(templates, settings, site, new Date());
    assert.match(
      nginx,
      /upstream matrix_regservice \{\n {4}server 127\.0\.0\.1:8010;\n {4}server 10\.0\.0\.2:8010;\n {4}server \[fd00::2\]:8010;\n\}/,
    );
    assert.match(nginx, /location = \/regapp\/1\/register \{\n\s+proxy_pass http:\/\/matrix_regservice;/);
    assert.match(
      nginx,
      /server \{\n {4}listen 127\.0\.0\.1:8019;\n[^]*?location \/regapp\/1\/_regservice\/ \{\n\s+default_type application\/json;\n\s+return 404 [^\n]*\n\s+\}\n\n\s+location \/regapp\/1\/ \{\n\s+proxy_pass http:\/\/matrix_regservice;\n\s+proxy_http_version 1\.1;\n\s+proxy_request_buffering off;\n\s+client_max_body_size 8m;/,
    );
    assert.equal(registrationUrlThroughNginx(settings, site), 'http://127.0.0.1:8019/regapp/1');
    nginxAccepts(nginx);
    for (const bad of ['10.0.0.2', '10.0.0.2:0', 'a;b:1', 'host:99999']) {
      assert.throws(() => renderNginxSite(templates, settings, { ...site, upstreams: [bad] }, new Date()), /--upstream/);
    }
  });

  it("with the operator's own server block: the location proxies to the gates' upstream, written with the loopback server for the http block", () => {
    const { settings } = resolveSettings([{ source: 't', values: { matrixdomain: 'hs.example.org', port: 8009 } }], {
      requireSecrets: false,
    });
    const gates = { upstreams: ['10.0.0.1:8009', '10.0.0.2:8009'], appservicePort: 8019 };
    const snippet = renderNginxSnippet(templates, settings, { ...gates, snippetPath: '/etc/nginx/snippets/regservice.conf' }, new Date());
    assert.match(snippet, /location = \/regapp\/1\/register \{\n\s+proxy_pass http:\/\/matrix_regservice;/);
    assert.doesNotMatch(snippet, /upstream |listen /, 'the snippet goes inside a server block');
    const upstream = renderNginxUpstream(templates, settings, gates, new Date());
    assert.doesNotMatch(upstream, /\{\{|location = /);
    assert.match(upstream, /upstream matrix_regservice \{\n {4}server 10\.0\.0\.1:8009;\n {4}server 10\.0\.0\.2:8009;\n\}/);
    assert.match(upstream, /listen 127\.0\.0\.1:8019;[^]*location \/regapp\/1\/ \{\n\s+proxy_pass http:\/\/matrix_regservice;/);
    // Synapse meets nginx's own errors there as Matrix JSON too: no gate answering, a transaction over 8m.
    assert.match(upstream, /error_page 502 503 504 = @matrix_regservice_unavailable;\n\s+error_page 413 = @matrix_regservice_too_large;/);
    assert.match(upstream, /location @matrix_regservice_unavailable \{[^}]*Retry-After 5 always;[^}]*return 503 '\{"errcode":"M_UNKNOWN"/);
    nginxAccepts(snippet, true, upstream);
  });
});

describe('values in the nginx site and systemd unit', () => {
  const now = new Date('2026-01-01T00:00:00Z');
  const settingsWith = (values: Record<string, string>) =>
    resolveSettings([{ source: 't', values: { matrixdomain: 'hs.example.org', ...values } }], { requireSecrets: false }).settings;

  it('quotes paths with spaces, % and $ as systemd reads them, and systemd-analyze verify accepts the unit', () => {
    const out = tempDir('regservice unit %h $HOME-');
    const runScript = join(out, 'run.sh');
    writeFileSync(runScript, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    const settings = settingsWith({ datapath: join(out, 'state dir') });
    const unit = renderSystemdUnit(readTemplate('matrix-regservice.service.template'), settings, { user: 'root', runScript }, now);
    const quoted = (path: string) => `"${path.replaceAll('%', '%%').replaceAll('$', '$$')}"`;
    assert.match(unit, new RegExp(`^ExecStart=${escapeForRegex(quoted(runScript))}$`, 'm'));
    assert.match(unit, new RegExp(`^ReadWritePaths=${escapeForRegex(quoted(join(out, 'state dir')))}$`, 'm'));
    const unitFile = join(out, 'matrix-regservice.service');
    writeFileSync(unitFile, unit);
    const verify = spawnSync('systemd-analyze', ['verify', unitFile], { encoding: 'utf8' });
    if (verify.error !== undefined && process.env.CI !== 'true') return; // systemd-analyze not installed here
    assert.equal(verify.status, 0, verify.stderr);
    assert.doesNotMatch(verify.stderr, /matrix-regservice\.service/, verify.stderr);
  });

  it('refuses what cannot be quoted: a newline in the user, control characters in paths, nginx syntax in names', () => {
    const site = { user: 'regsvc', runScript: '/srv/rs/run.sh' };
    const unitTemplate = readTemplate('matrix-regservice.service.template');
    const settings = settingsWith({});
    assert.throws(
      () => renderSystemdUnit(unitTemplate, settings, { ...site, user: 'regsvc\nExecStartPre=/bin/evil' }, now),
      /--systemd-user .* is not a user name/,
    );
    assert.throws(
      () => renderSystemdUnit(unitTemplate, settings, { ...site, runScript: '/srv/rs\n/run.sh' }, now),
      /run\.sh path .* has a control character/,
    );
    assert.throws(
      () => renderSystemdUnit(unitTemplate, settingsWith({ datapath: '/srv/a\rb' }), site, now),
      /--datapath .* has a control character/,
    );
    for (const name of ['hs.example.org; location / { return 200; }', 'a{', 'a b', 'a#b', '$host']) {
      assert.throws(
        () => renderNginxSite(templates, settings, { ...plainSite, publicName: name }, now),
        /--public-name .* cannot go into an nginx site/,
      );
    }
  });

  it('routes the registration url path, and nginx -t accepts the site', () => {
    const settings = settingsWith({ 'appservice-url': 'http://127.0.0.1:8009/gates/(photon)' });
    const siteText = renderNginxSite(templates, settings, { ...plainSite, publicPort: 8080 }, now);
    assert.match(siteText, /location = \/gates\/\(photon\)\/register \{/);
    nginxAccepts(siteText);
  });
});

describe('writeGenconfig', () => {
  it('writes files with their modes and refuses to overwrite any of them without force', () => {
    const dir = tempDir('regservice-genconfig-');
    const plan = planGenconfig(input({}, dir));
    writeGenconfig(plan, dir, false);
    assert.equal(statSync(join(dir, 'registration.yaml')).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, 'run.sh')).mode & 0o777, 0o755);

    writeFileSync(join(dir, 'run.sh'), 'operator edits', { mode: 0o644 });
    const again = planGenconfig(input({ port: '9999' }, dir));
    assert.throws(() => writeGenconfig(again, dir, false), /refusing to overwrite .*run\.sh.*--force/);
    assert.equal(readFileSync(join(dir, 'run.sh'), 'utf8'), 'operator edits', 'nothing was replaced');
    writeGenconfig(again, dir, true);
    assert.match(readFileSync(join(dir, 'run.sh'), 'utf8'), /--port 9999/);
    assert.equal(statSync(join(dir, 'run.sh')).mode & 0o777, 0o755);
    assert.ok(existsSync(join(dir, 'registration_shared_secret')));
  });

  it('writes all or nothing: a file whose directory is missing stops it before anything is written', () => {
    const parent = tempDir('regservice-allornothing-');
    const out = join(parent, 'deployment');
    const plan = planGenconfig(input({}, out));
    const files = [...plan.files, { name: join(parent, 'no-such-dir', 'site.conf'), content: 'server {}\n', mode: 0o644 }];
    assert.throws(() => writeGenconfig({ files }, out, false), /the directory .*no-such-dir does not exist/);
    assert.deepEqual(readdirSync(parent), [], 'not even the output directory');
    writeGenconfig(plan, out, false);
    assert.deepEqual(readdirSync(out).sort(), ['registration.yaml', 'registration_shared_secret', 'run.sh']);
  });
});

describe('every daemon setting given to genconfig reaches the deployment', () => {
  /** A valid value of each kind, as a flag would give it. */
  const sample = (kind: string, key: string): string => {
    if (key === 'backend') return 'admin-api';
    if (key === 'database') return 'postgresql://regservice@127.0.0.1/regservice';
    if (key === 'trusted-proxies') return '10.0.0.5';
    if (key === 'matrixurl') return 'http://127.0.0.1:8118';
    if (key.endsWith('port')) return '9011';
    if (key === 'verbosity') return '4';
    if (key === 'rate-limit-ipv6-prefix') return '56';
    if (kind === 'integer') return '7';
    if (kind === 'boolean') return 'true';
    if (kind === 'path') return `/srv/given/${key}`;
    return `given-${key}`;
  };

  const SECRET_FILES: Record<string, string> = {
    'sharesecret-file': 'sharesecret',
    'admin-token-file': 'admin-token',
    'database-password-file': 'database-password',
  };

  it('walks the options table: each is written by genconfig, carried as given, made the tokens, or refused by name', () => {
    for (const spec of OPTION_SPECS) {
      const value = sample(spec.kind, spec.key);
      const given = { [spec.key]: value };
      const use = 'genconfig' in spec ? spec.genconfig : 'carried';
      if (use === 'refused') {
        assert.throws(() => carriedSettings(given), new RegExp(`--${spec.key} `), spec.key);
        continue;
      }
      const carried = carriedSettings(given);
      const secretKey = SECRET_FILES[spec.key];
      const values: Record<string, string> = {
        ...(['admin-token-file', 'backend', 'allow-password-reset'].includes(spec.key)
          ? { backend: 'admin-api', 'admin-token': 'token-read', 'admin-token-source': '/srv/token' }
          : {}),
        ...(spec.key === 'database-password-file' ? { database: 'postgresql://regservice@127.0.0.1/regservice' } : {}),
        [spec.key]: value,
        // A secret's file as loadSettings leaves it: read, and its path remembered.
        ...(secretKey === undefined ? {} : { [secretKey]: 'secret-read', [`${secretKey}-source`]: value }),
      };
      const planned = input(values);
      const plan = planGenconfig({ ...planned, carried });
      const run = fileNamed(plan, 'run.sh').content;
      const options = { registrationUrl: 'http://r/regapp/1', synapseRegistration: '/data/r.yaml', carried };
      const container = containerFiles(plan, planned.settings, options, new Date()).find(
        (file) => file.name === 'regservice.yaml',
      )?.content;
      if (use === 'tokens') {
        assert.equal(spec.key === 'astoken' ? plan.registration.as_token : plan.registration.hs_token, value, spec.key);
        assert.ok(!run.includes(value) && !container?.includes(value), `${spec.key} stays out of run.sh and regservice.yaml`);
        continue;
      }
      if (spec.kind === 'secret') {
        assert.ok(!run.includes(value) && !container?.includes(value), `${spec.key} never on a command line`);
        assert.match(run, new RegExp(`--${spec.key}-file `), spec.key);
        continue;
      }
      const flag = spec.kind === 'boolean' ? `--${spec.key} ` : `--${spec.key} ${shellQuote(value)} `;
      assert.ok(run.includes(flag), `run.sh carries ${flag}:\n${run}`);
      assert.match(container ?? '', new RegExp(`^${spec.key}: `, 'm'), `regservice.yaml carries ${spec.key}:\n${container}`);
      assert.equal(
        carried.some((setting) => setting.key === spec.key),
        use === 'carried',
        spec.key,
      );
    }
  });
});

describe('warnings for gates on other machines', () => {
  const plan = {
    upstreams: ['10.0.0.1:8009', '10.0.0.2:8009'],
    homeserverUrl: 'http://10.0.0.1:8008',
    host: '0.0.0.0',
    trustedProxies: 'loopback,10.0.0.1',
  };

  it('says nothing when every gate can listen, reach the homeserver and believe nginx, or when all gates are local', () => {
    assert.deepEqual(gateWarnings(plan), []);
    assert.deepEqual(
      gateWarnings({
        upstreams: ['127.0.0.1:8009', '[::1]:8010'],
        homeserverUrl: 'http://127.0.0.1:8008',
        host: '127.0.0.1',
        trustedProxies: 'loopback',
      }),
      [],
    );
  });

  it('names a loopback --matrixurl, a loopback --host and --trusted-proxies without the network, whatever their spelling', () => {
    for (const homeserverUrl of ['http://127.0.0.1:8008', 'http://localhost:8008', 'http://[::1]:8008', 'http://[::ffff:7f00:1]:8008'])
      assert.match(
        gateWarnings({ ...plan, homeserverUrl }).join('\n'),
        /--matrixurl .* is loopback: the gate at 10\.0\.0\.1:8009 cannot reach Synapse/,
      );
    assert.match(gateWarnings({ ...plan, host: '127.0.0.1' }).join('\n'), /--host 127\.0\.0\.1: every gate listens on loopback only/);
    assert.match(
      gateWarnings({ ...plan, trustedProxies: 'loopback' }).join('\n'),
      /--trusted-proxies loopback names none of the gates' addresses/,
    );
    assert.deepEqual(gateWarnings({ ...plan, trustedProxies: 'loopback,10.0.0.0/24' }), []);
    assert.deepEqual(gateWarnings({ ...plan, upstreams: ['[fd00::1]:8009'], trustedProxies: 'uniquelocal' }), []);
  });
});
