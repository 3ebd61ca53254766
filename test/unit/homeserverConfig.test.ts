import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { readHomeserverFacts } from '../../src/genconfig/homeserverConfig.js';
import { planHomeserverPatch } from '../../src/genconfig/homeserverPatch.js';

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
    const facts = readHomeserverFacts(HOMESERVER, '/etc/matrix-synapse');
    assert.deepEqual(facts.settings, {
      matrixdomain: 'transport01.example.org',
      'sharesecret-file': '/etc/matrix-synapse/secrets/shared',
      matrixurl: 'http://127.0.0.1:8008',
    });
  });

  it('takes an inline secret as a value (to go into a file) and never reports it', () => {
    const facts = readHomeserverFacts(
      'server_name: a.org\nregistration_shared_secret: "s3cr3t"\nlisteners:\n  - {port: 443, tls: true, type: http, bind_addresses: ["::1"], resources: [{names: [client]}]}\n',
      '/x',
    );
    assert.equal(facts.settings.sharesecret, 's3cr3t');
    assert.equal(facts.settings.matrixurl, 'https://[::1]:443');
    assert.ok(!facts.found.join(' ').includes('s3cr3t'));
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
