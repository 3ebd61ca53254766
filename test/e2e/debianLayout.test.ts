import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from '../support/timedTests.js';
import { promisify } from 'node:util';
import { BIN } from '../support/gate.js';
import { ownSynapseSkip, readDebianConfigWithSynapse, SYNAPSE_ROOT } from '../support/synapse.js';
import { tempDir } from '../support/tempDir.js';

const run = promisify(execFile);

describe("Debian's matrix-synapse package: homeserver.yaml and conf.d, read by the real Synapse", { skip: ownSynapseSkip() }, () => {
  it('takes server_name from conf.d and the plain-HTTP listener, and adds a conf.d file of its own carrying the whole list', async () => {
    // /etc/matrix-synapse as the package leaves it: its homeserver.yaml (a TLS listener first), conf.d with the
    // server_name its postinst writes, and an operator's bridge listed in a conf.d file of theirs.
    const etc = tempDir('regservice-debian-etc-');
    mkdirSync(join(etc, 'conf.d'));
    copyFileSync(join(SYNAPSE_ROOT, 'etc/matrix-synapse/homeserver.yaml'), join(etc, 'homeserver.yaml'));
    copyFileSync(join(SYNAPSE_ROOT, 'etc/matrix-synapse/conf.d/report_stats.yaml'), join(etc, 'conf.d/report_stats.yaml'));
    writeFileSync(join(etc, 'conf.d/server_name.yaml'), 'server_name: debian.test\n');
    writeFileSync(join(etc, 'conf.d/bridges.yaml'), 'app_service_config_files:\n  - /etc/matrix-synapse/telegram-registration.yaml\n');
    const before = Object.fromEntries(
      ['homeserver.yaml', 'conf.d/report_stats.yaml', 'conf.d/server_name.yaml', 'conf.d/bridges.yaml'].map((name) => [
        name,
        readFileSync(join(etc, name), 'utf8'),
      ]),
    );
    const out = join(tempDir('regservice-debian-out-'), 'regservice');
    const genconfig = [
      'genconfig',
      '--homeserver-config',
      join(etc, 'homeserver.yaml'),
      '--out',
      out,
      '--patch-homeserver',
      '--synapse-workdir',
      tempDir('regservice-varlib-'),
    ];

    const { stdout } = await run(BIN, genconfig);
    assert.match(stdout, /server_name debian\.test/);
    assert.match(stdout, /client listener http:\/\/127\.0\.0\.1:8008 \(plain HTTP on loopback; chosen over TLS on port 8448\)/);
    const ours = join(etc, 'conf.d', 'zz-matrix-regservice.yaml');
    assert.match(stdout, new RegExp(`Added ${ours.replace(/[.]/g, '\\.')} for Synapse`));
    for (const [name, text] of Object.entries(before)) assert.equal(readFileSync(join(etc, name), 'utf8'), text, `${name} left alone`);
    const runSh = readFileSync(join(out, 'run.sh'), 'utf8');
    assert.match(runSh, /--matrixdomain debian\.test/);
    assert.match(runSh, /--matrixurl http:\/\/127\.0\.0\.1:8008 /);

    const files: Record<string, string> = { 'homeserver.yaml': before['homeserver.yaml'] ?? '' };
    for (const name of readdirSync(join(etc, 'conf.d'))) files[`conf.d/${name}`] = readFileSync(join(etc, 'conf.d', name), 'utf8');
    const merged = readDebianConfigWithSynapse(
      files,
      ['appservice.app_service_config_files', 'registration.enable_registration', 'server.server_name'],
      [join(out, 'registration_shared_secret')],
    );
    assert.equal(
      merged['appservice.app_service_config_files'],
      `['/etc/matrix-synapse/telegram-registration.yaml', '${join(out, 'registration.yaml')}']`,
    );
    assert.equal(merged['registration.enable_registration'], 'False');
    assert.equal(merged['server.server_name'], 'debian.test');

    const again = await run(BIN, [...genconfig, '--force']);
    assert.match(again.stdout, /Synapse's configuration already lists this deployment's registration/);
    assert.doesNotMatch(again.stdout, /This run changed/, 'the same tokens, secret and url: nothing for Synapse to reload');
  });
});
