import { strict as assert } from 'node:assert';
import { describe, it } from '../support/timedTests.js';
import { planHomeserverPatch } from '../../src/genconfig/homeserverPatch.js';
import { CONFIG_CHECK_DIR, ownSynapseSkip, readConfigWithSynapse } from '../support/synapse.js';

const skip = ownSynapseSkip();

// A file Synapse accepts, with what a careless rewrite would change: comments, an octal-looking and an exponent-looking
// value, an anchor used elsewhere, a duplicated key (PyYAML: the last wins), quoting, a list with a trailing comment.
const HOMESERVER = String.raw`# Synapse, as an operator keeps it
server_name: "photon.test"   # do not change
pid_file: ${CONFIG_CHECK_DIR}/homeserver.pid
report_stats: false
listeners:
  - port: 8008
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    resources:
      - names: [client]
database:
  name: sqlite3
  args: {database: ${CONFIG_CHECK_DIR}/homeserver.db}
media_store_path: ${CONFIG_CHECK_DIR}/media_store
signing_key_path: ${CONFIG_CHECK_DIR}/signing.key
log_config: ${CONFIG_CHECK_DIR}/log.yaml
macaroon_secret_key: 'mac'
form_secret: "form"
trusted_key_servers: []
enable_registration: no   # YAML 1.1: false already
x_tuning: &tuning 1e3
x_file_mode: 0644
x_again: *tuning
x_twice: first
x_twice: second
app_service_config_files:
  - ${CONFIG_CHECK_DIR}/bridge.yaml   # the bridge
  # more bridges go here
`;

describe('patched homeserver.yaml, read by the real Synapse and PyYAML', { skip }, () => {
  it('stays a file Synapse accepts, with every value as before but the ones patched', () => {
    const registrationFile = `${CONFIG_CHECK_DIR}/registration.yaml`;
    const secretFile = `${CONFIG_CHECK_DIR}/registration_shared_secret`;
    const patch = planHomeserverPatch(HOMESERVER, { registrationFile, sharedSecretFile: secretFile });
    assert.ok(patch.ok, patch.ok ? '' : patch.problems.join('; '));
    assert.deepEqual(
      patch.changes.map((change) => change.key),
      ['app_service_config_files', 'registration_shared_secret_path'],
    );

    const before = readConfigWithSynapse(HOMESERVER);
    assert.ok(before.accepted, before.output);
    const after = readConfigWithSynapse(patch.text);
    assert.ok(after.accepted, after.output);
    const {
      app_service_config_files: files,
      registration_shared_secret_path: secretPath,
      ...rest
    } = after.values as Record<string, unknown>;
    const { app_service_config_files: filesBefore, ...restBefore } = before.values as Record<string, unknown>;
    assert.deepEqual(rest, restBefore, 'every other value reads as before');
    assert.deepEqual(files, [...(filesBefore as string[]), registrationFile]);
    assert.equal(secretPath, secretFile);
    assert.equal((after.values as Record<string, unknown>).x_file_mode, 420, 'PyYAML still reads 0644 as octal');
    assert.equal((after.values as Record<string, unknown>).x_twice, 'second');
  });
});
