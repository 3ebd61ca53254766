import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { applyHomeserverChanges, neededHomeserverChanges, readHomeserverFacts } from '../../src/genconfig/homeserverConfig.js';

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
    const facts = readHomeserverFacts('server_name: a.org\nregistration_shared_secret: "s3cr3t"\nlisteners:\n  - {port: 443, tls: true, type: http, bind_addresses: ["::1"], resources: [{names: [client]}]}\n', '/x');
    assert.equal(facts.settings.sharesecret, 's3cr3t');
    assert.equal(facts.settings.matrixurl, 'https://[::1]:443');
    assert.ok(!facts.found.join(' ').includes('s3cr3t'));
  });
});

describe('homeserver.yaml changes', () => {
  it('names only what is missing, applies it keeping comments, and is idempotent', () => {
    const changes = neededHomeserverChanges(HOMESERVER, { registrationFile: '/srv/rs/registration.yaml', sharedSecretFile: '/srv/rs/secret' });
    assert.deepEqual(changes.map((change) => change.key), ['enable_registration', 'app_service_config_files']);
    const patched = applyHomeserverChanges(HOMESERVER, changes);
    assert.match(patched, /^# Synapse configuration/);
    assert.match(patched, /# public name/);
    assert.match(patched, /# federation/);
    const doc = parse(patched) as Record<string, unknown>;
    assert.equal(doc.enable_registration, false);
    assert.deepEqual(doc.app_service_config_files, ['/etc/matrix-synapse/bridge.yaml', '/srv/rs/registration.yaml']);
    assert.equal(doc.registration_shared_secret_path, 'secrets/shared', 'an existing secret is left alone');
    assert.deepEqual(neededHomeserverChanges(patched, { registrationFile: '/srv/rs/registration.yaml', sharedSecretFile: '/srv/rs/secret' }), []);
  });

  it('adds registration_shared_secret_path when the homeserver has no secret yet', () => {
    const changes = neededHomeserverChanges('server_name: a.org\n', { registrationFile: '/r.yaml', sharedSecretFile: '/s' });
    const doc = parse(applyHomeserverChanges('server_name: a.org\n', changes)) as Record<string, unknown>;
    assert.deepEqual(doc, { server_name: 'a.org', enable_registration: false, app_service_config_files: ['/r.yaml'], registration_shared_secret_path: '/s' });
  });
});
