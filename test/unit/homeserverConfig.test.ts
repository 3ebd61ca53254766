import { strict as assert } from 'node:assert';
import { describe, it } from '../support/timedTests.js';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { configValue, readHomeserverFacts, readSynapseConfig } from '../../src/genconfig/homeserverConfig.js';
import { planHomeserverUpdate } from '../../src/genconfig/homeserverChanges.js';
import { parseLikePyYaml, planHomeserverPatch, pyYamlValue } from '../../src/genconfig/homeserverPatch.js';
import type { OurRegistration } from '../../src/genconfig/registrationEntries.js';
import { tempDir } from '../support/tempDir.js';

/** What readHomeserverFacts reads of one homeserver.yaml. */
const factsOf = (text: string, dir: string) => {
  const doc = parseLikePyYaml(text);
  return readHomeserverFacts((key) => pyYamlValue(doc, key), dir);
};

const HOMESERVER = `# Synapse configuration
server_name: "transport01.example.org"  # public name
listeners:
  # federation
  - port: 8448
    type: http
    resources:
      - names: [federation]
  - port: 8008
    tls: false
    bind_addresses: ['0.0.0.0']
    type: http
    resources:
      - names: [client, federation]
registration_shared_secret_path: secrets/shared
app_service_config_files:
  - /etc/matrix-synapse/bridge.yaml
`;

describe('readHomeserverFacts', () => {
  it('takes server_name, the shared secret file and the client listener', () => {
    const facts = factsOf(HOMESERVER, '/etc/matrix-synapse');
    assert.deepEqual(facts.settings, {
      matrixdomain: 'transport01.example.org',
      'sharesecret-file': '/etc/matrix-synapse/secrets/shared',
      matrixurl: 'http://127.0.0.1:8008',
    });
  });

  it('takes an inline secret as a value (to go into a file) and never reports it', () => {
    const facts = factsOf(
      'server_name: a.org\nregistration_shared_secret: "s3cr3t"\nlisteners:\n  - {port: 443, tls: true, type: http, bind_addresses: ["::1"], resources: [{names: [client]}]}\n',
      '/x',
    );
    assert.equal(facts.settings.sharesecret, 's3cr3t');
    assert.equal(facts.settings.matrixurl, 'https://[::1]:443');
    assert.ok(!facts.found.join(' ').includes('s3cr3t'));
  });
});

describe("Debian's package layout", () => {
  // The listeners of Debian's /etc/matrix-synapse/homeserver.yaml (matrix-synapse package): the TLS one first.
  const DEBIAN_LISTENERS = `listeners:
  - port: 8448
    bind_addresses:
      - '::1'
      - '127.0.0.1'
    type: http
    tls: true
    x_forwarded: false
    resources:
      - names: [client]
        compress: true
      - names: [federation]
        compress: false
  - port: 8008
    tls: false
    bind_addresses:
      - '::1'
      - '127.0.0.1'
    type: http
    x_forwarded: false
    resources:
      - names: [client]
        compress: true
      - names: [federation]
        compress: false
`;

  it('chooses a plain-HTTP client listener on loopback, and says which and why', () => {
    const facts = factsOf(DEBIAN_LISTENERS, '/etc/matrix-synapse');
    assert.equal(facts.settings.matrixurl, 'http://127.0.0.1:8008');
    assert.ok(
      facts.found.includes('client listener http://127.0.0.1:8008 (plain HTTP on loopback; chosen over TLS on port 8448)'),
      facts.found.join('; '),
    );
  });

  it('reads conf.d after homeserver.yaml in name order, each top-level key replacing the one before', () => {
    const dir = tempDir('regservice-debian-');
    writeFileSync(join(dir, 'homeserver.yaml'), `${DEBIAN_LISTENERS}app_service_config_files: [/etc/a.yaml]\nenable_registration: true\n`);
    mkdirSync(join(dir, 'conf.d'));
    writeFileSync(join(dir, 'conf.d', 'server_name.yaml'), 'server_name: debian.example.org\n');
    writeFileSync(join(dir, 'conf.d', 'report_stats.yaml'), 'report_stats: false\n');
    writeFileSync(join(dir, 'conf.d', 'bridges.yaml'), 'app_service_config_files:\n  - /etc/matrix-synapse/bridge.yaml\n');
    writeFileSync(join(dir, 'conf.d', 'notes.txt'), 'not yaml: ignored\n');
    const config = readSynapseConfig(join(dir, 'homeserver.yaml'));
    assert.deepEqual(
      config.confFiles.map((file) => file.path.slice(dir.length)),
      ['/conf.d/bridges.yaml', '/conf.d/report_stats.yaml', '/conf.d/server_name.yaml'],
    );
    assert.equal(configValue(config, 'server_name'), 'debian.example.org');
    assert.deepEqual(configValue(config, 'app_service_config_files'), ['/etc/matrix-synapse/bridge.yaml']);
    assert.equal(configValue(config, 'enable_registration'), true);
  });

  it("writes the changes into a conf.d file of its own that sorts last and carries the whole list, leaving the package's files alone", () => {
    const dir = tempDir('regservice-debian-');
    writeFileSync(join(dir, 'homeserver.yaml'), 'enable_registration: true\n');
    mkdirSync(join(dir, 'conf.d'));
    writeFileSync(join(dir, 'conf.d', 'server_name.yaml'), 'server_name: debian.example.org\n');
    writeFileSync(join(dir, 'conf.d', 'zzz-bridges.yaml'), 'app_service_config_files: [/etc/matrix-synapse/bridge.yaml]\n');
    const ours: OurRegistration = {
      file: join(dir, 'rs', 'registration.yaml'),
      id: 'rs',
      url: 'http://127.0.0.1:8009/regapp/1',
      asToken: 'a',
      hsToken: 'h',
      userRegexes: ['^@0x[0-9a-f]{40}:debian\\.example\\.org$'],
    };
    const update = planHomeserverUpdate(readSynapseConfig(join(dir, 'homeserver.yaml')), {
      registration: ours,
      sharedSecretFile: '/etc/rs/secret',
      bases: [dir],
      now: new Date('2026-01-01T00:00:00Z'),
    });
    assert.equal(update.kind, 'write');
    if (update.kind !== 'write') return;
    assert.equal(update.inPlace, false);
    assert.equal(update.path, join(dir, 'conf.d', 'zzz-matrix-regservice.yaml'), 'after zzz-bridges.yaml');
    assert.deepEqual(parse(update.text), {
      enable_registration: false,
      app_service_config_files: ['/etc/matrix-synapse/bridge.yaml', ours.file],
      registration_shared_secret_path: '/etc/rs/secret',
    });
  });
});

describe('this deployment among the application services', () => {
  const setUp = () => {
    const dir = tempDir('regservice-entries-');
    mkdirSync(join(dir, 'rs'));
    const ours: OurRegistration = {
      file: join(dir, 'rs', 'registration.yaml'),
      id: 'KEEP12ABCD-photon.test',
      url: 'http://127.0.0.1:8009/regapp/1',
      asToken: 'ASTOKEN',
      hsToken: 'HSTOKEN',
      userRegexes: ['^@0x[0-9a-f]{40}:photon\\.test$'],
    };
    const plan = (homeserver: string, bases = [dir]) => {
      writeFileSync(join(dir, 'homeserver.yaml'), homeserver);
      return planHomeserverUpdate(readSynapseConfig(join(dir, 'homeserver.yaml')), {
        registration: ours,
        sharedSecretFile: undefined,
        bases,
        now: new Date(),
      });
    };
    return { dir, ours, plan };
  };

  it('never adds a second entry for a file it already lists: relative to the config directory, or through a link', () => {
    const { dir, ours, plan } = setUp();
    writeFileSync(ours.file, 'id: anything\n');
    assert.equal(plan('enable_registration: false\napp_service_config_files: [rs/registration.yaml]\n').kind, 'none');
    symlinkSync(join(dir, 'rs'), join(dir, 'link'));
    assert.equal(plan('enable_registration: false\napp_service_config_files: [link/registration.yaml]\n').kind, 'none');
  });

  it("keeps another file that is this registration; replaces the Go original's (our id and tokens, its `@.*`) by ours", () => {
    const { dir, ours, plan } = setUp();
    const registration = (regex: string): string =>
      `id: KEEP12ABCD-photon.test\nhs_token: HSTOKEN\nas_token: ASTOKEN\nurl: http://127.0.0.1:8009/regapp/1\nnamespaces:\n  users:\n    - {exclusive: false, regex: '${regex}'}\n`;
    writeFileSync(join(dir, 'registration.yaml'), registration('^@0x[0-9a-f]{40}:photon\\.test$'));
    assert.equal(plan('enable_registration: false\napp_service_config_files: [ registration.yaml]\n').kind, 'none');
    writeFileSync(join(dir, 'registration.yaml'), registration('@.*'));
    const update = plan('enable_registration: false\napp_service_config_files: [ registration.yaml, /etc/bridge.yaml]\n');
    assert.equal(update.kind, 'write');
    assert.equal(
      update.kind === 'write' ? update.text : '',
      `enable_registration: false\napp_service_config_files: [ ${ours.file}, /etc/bridge.yaml]\n`,
      'the entry replaced in place, nothing else touched',
    );
  });

  it("replaces an entry naming the service's own copy by Synapse's, when Synapse has a copy of its own", () => {
    const { dir, ours } = setUp();
    const serviceCopy = join(dir, 'service', 'registration.yaml');
    mkdirSync(join(dir, 'service'));
    // The service's copy holds what Synapse's does: only its path, unreadable to Synapse's account, makes it stale.
    writeFileSync(
      serviceCopy,
      `id: ${ours.id}\nhs_token: HSTOKEN\nas_token: ASTOKEN\nurl: ${ours.url}\nnamespaces:\n  users:\n    - {exclusive: false, regex: '${ours.userRegexes[0]}'}\n`,
    );
    const separate = { ...ours, serviceCopy };
    writeFileSync(join(dir, 'homeserver.yaml'), `enable_registration: false\napp_service_config_files:\n  - ${serviceCopy}\n`);
    const update = planHomeserverUpdate(readSynapseConfig(join(dir, 'homeserver.yaml')), {
      registration: separate,
      sharedSecretFile: undefined,
      bases: [dir],
      now: new Date(),
    });
    assert.equal(
      update.kind === 'write' ? update.text : update.kind,
      `enable_registration: false\napp_service_config_files:\n  - ${ours.file}\n`,
    );
  });

  it("points registration_shared_secret_path away from the service's copy, in conf.d too", () => {
    const { dir, ours } = setUp();
    const serviceSecret = join(dir, 'rs', 'registration_shared_secret');
    writeFileSync(serviceSecret, 'a-secret\n');
    mkdirSync(join(dir, 'conf.d'));
    writeFileSync(join(dir, 'conf.d', 'secret.yaml'), 'registration_shared_secret_path: rs/registration_shared_secret\n');
    writeFileSync(join(dir, 'homeserver.yaml'), `enable_registration: false\napp_service_config_files: [${ours.file}]\n`);
    const update = planHomeserverUpdate(readSynapseConfig(join(dir, 'homeserver.yaml')), {
      registration: ours,
      sharedSecretFile: join(dir, 'matrix-regservice-shared-secret'),
      serviceSecretCopy: serviceSecret,
      bases: [dir],
      now: new Date(),
    });
    assert.equal(
      update.kind === 'write'
        ? (parse(update.text) as { registration_shared_secret_path: unknown }).registration_shared_secret_path
        : update.kind,
      join(dir, 'matrix-regservice-shared-secret'),
    );
  });

  it('never lists ours twice: a stale entry beside ours, or two stale entries, leave one of ours', () => {
    const { dir, ours, plan } = setUp();
    writeFileSync(ours.file, 'id: anything\n');
    writeFileSync(join(dir, 'go.yaml'), `id: ${ours.id}\nurl: http://127.0.0.1:61009/regapp/1\n`);
    writeFileSync(join(dir, 'go2.yaml'), `id: ${ours.id}\nurl: http://127.0.0.1:61010/regapp/1\n`);
    const beside = plan(
      `enable_registration: false\napp_service_config_files:\n  - ${ours.file}\n  - ${join(dir, 'go.yaml')}\n  - /etc/b.yaml\n`,
    );
    assert.equal(
      beside.kind === 'write' ? beside.text : beside.kind,
      `enable_registration: false\napp_service_config_files:\n  - ${ours.file}\n  - /etc/b.yaml\n`,
    );
    const two = plan(`enable_registration: false\napp_service_config_files:\n  - ${join(dir, 'go.yaml')}\n  - ${join(dir, 'go2.yaml')}\n`);
    assert.equal(two.kind === 'write' ? two.text : two.kind, `enable_registration: false\napp_service_config_files:\n  - ${ours.file}\n`);
    const flow = plan(`enable_registration: false\napp_service_config_files: [${ours.file}, ${join(dir, 'go.yaml')}]\n`);
    assert.match(flow.kind === 'refused' ? flow.problems.join('; ') : flow.kind, /remove .*go\.yaml by hand, ours is listed already/);
    mkdirSync(join(dir, 'conf.d'));
    const confD = plan(`app_service_config_files: [${join(dir, 'go.yaml')}, ${ours.file}, ${join(dir, 'go2.yaml')}]\n`);
    assert.deepEqual(
      confD.kind === 'write' ? (parse(confD.text) as { app_service_config_files: unknown }).app_service_config_files : confD.kind,
      [ours.file],
    );
  });

  it('refuses a relative entry it cannot place: in neither directory, or a different file in each', () => {
    const { dir, plan } = setUp();
    const workdir = tempDir('regservice-workdir-');
    const missing = plan('app_service_config_files: [ registration.yaml]\n', [dir, workdir]);
    assert.equal(missing.kind, 'refused');
    assert.match(
      missing.kind === 'refused' ? missing.problems.join('; ') : '',
      /registration\.yaml is relative, and no such file is in .* or .*; write .*absolute/,
    );
    writeFileSync(join(dir, 'registration.yaml'), 'id: bridge-a\n');
    writeFileSync(join(workdir, 'registration.yaml'), 'id: bridge-b\n');
    const both = plan('app_service_config_files: [ registration.yaml]\n', [dir, workdir]);
    assert.match(both.kind === 'refused' ? both.problems.join('; ') : '', /names different files in .*depending on where Synapse runs/);
  });
});

const WANTED = { registrationFile: '/srv/rs/registration.yaml', sharedSecretFile: '/srv/rs/secret' };

function patched(text: string, wanted: { registrationFile: string; sharedSecretFile?: string } = WANTED): string {
  const patch = planHomeserverPatch(text, wanted);
  assert.ok(patch.ok, patch.ok ? '' : patch.problems.join('; '));
  return patch.text;
}

function refused(text: string): readonly string[] {
  const patch = planHomeserverPatch(text, WANTED);
  assert.equal(patch.ok, false, 'expected a refusal');
  return patch.ok ? [] : patch.problems;
}

describe('patching homeserver.yaml', () => {
  it('adds only what is missing, changes no other byte, and is idempotent', () => {
    const patch = planHomeserverPatch(HOMESERVER, WANTED);
    assert.ok(patch.ok);
    assert.deepEqual(
      patch.changes.map((change) => change.key),
      ['enable_registration', 'app_service_config_files'],
    );
    assert.equal(
      patch.text,
      HOMESERVER.replace('  - /etc/matrix-synapse/bridge.yaml\n', '  - /etc/matrix-synapse/bridge.yaml\n  - /srv/rs/registration.yaml\n') +
        'enable_registration: false\n',
    );
    const again = planHomeserverPatch(patch.text, WANTED);
    assert.deepEqual(again.changes, []);
    assert.ok(again.ok && again.text === patch.text);
  });

  it('adds registration_shared_secret_path when the homeserver has no secret yet', () => {
    assert.equal(
      patched('server_name: a.org\n', { registrationFile: '/r.yaml', sharedSecretFile: '/s' }),
      'server_name: a.org\nenable_registration: false\napp_service_config_files:\n  - /r.yaml\nregistration_shared_secret_path: /s\n',
    );
  });

  it('keeps 0644, 1e3, quoting, comments, CRLF line ends and flow lists; edits values in place', () => {
    const text =
      'server_name: "a.org"   # name\r\nfile_mode: 0644\r\nmax: 1e3\r\nenable_registration: yes  # open!\r\napp_service_config_files: [/etc/a.yaml]  # bridges\r\nregistration_shared_secret: "x"';
    assert.equal(
      patched(text),
      'server_name: "a.org"   # name\r\nfile_mode: 0644\r\nmax: 1e3\r\nenable_registration: false  # open!\r\napp_service_config_files: [/etc/a.yaml, /srv/rs/registration.yaml]  # bridges\r\nregistration_shared_secret: "x"',
    );
    assert.equal(
      patched('enable_registration: no\napp_service_config_files: []\nregistration_shared_secret: x\n'),
      'enable_registration: no\napp_service_config_files: [/srv/rs/registration.yaml]\nregistration_shared_secret: x\n',
      'YAML 1.1: no is false',
    );
    assert.equal(
      patched('app_service_config_files:\nregistration_shared_secret: x\n'),
      'app_service_config_files: [/srv/rs/registration.yaml]\nregistration_shared_secret: x\nenable_registration: false\n',
    );
    assert.equal(
      patched('app_service_config_files:\n    - "/a b.yaml"   # one\n    # two, later\nregistration_shared_secret: x\n', {
        registrationFile: '/srv/with space.yaml',
      }),
      'app_service_config_files:\n    - "/a b.yaml"   # one\n    - "/srv/with space.yaml"\n    # two, later\nregistration_shared_secret: x\nenable_registration: false\n',
    );
  });

  it('reads a duplicated key of another setting as PyYAML does, and refuses a duplicate of one it reads or changes', () => {
    assert.equal(
      patched(
        'report_stats: true\nreport_stats: false\nregistration_shared_secret: x\nenable_registration: false\napp_service_config_files: [/srv/rs/registration.yaml]\n',
      ),
      'report_stats: true\nreport_stats: false\nregistration_shared_secret: x\nenable_registration: false\napp_service_config_files: [/srv/rs/registration.yaml]\n',
    );
    assert.match(
      refused('enable_registration: true\nserver_name: a\nenable_registration: true\n').join('\n'),
      /enable_registration is set 2 times \(lines 1, 3\)/,
    );
  });

  it('refuses, naming the line, a file it cannot patch safely: syntax errors, tabs, aliases, several documents', () => {
    assert.match(refused('server_name: a.org\nlisteners:\n\t- port: 8008\n').join('\n'), /line 3, column 1: tab as indent/);
    assert.match(refused('server_name: [a.org\n').join('\n'), /line \d+, column \d+:/);
    assert.match(
      refused('bridges: &b\n  - /etc/a.yaml\napp_service_config_files: *b\nregistration_shared_secret: x\n').join('\n'),
      /app_service_config_files \(line 3\) is an alias or anchor/,
    );
    assert.match(refused('server_name: a\n---\nserver_name: b\n').join('\n'), /more than one YAML document/);
    assert.match(refused('- a\n- b\n').join('\n'), /not a block mapping/);
  });
});
