import { strict as assert } from 'node:assert';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from '../support/timedTests.js';
import { SettingsError } from '../../src/config/settings.js';
import { translateGoArgv } from '../../src/goOriginal/goFlags.js';
import { findGoRegistration } from '../../src/goOriginal/goRegistration.js';
import { loadSettingsForGoRunScript } from '../../src/goOriginal/goSettings.js';
import { tempDir } from '../support/tempDir.js';

const FIXTURES = new URL('../fixtures/go-original/', import.meta.url).pathname;

describe("the Go original's command line", () => {
  it('takes long flags with one dash as Go does, and drops its diagnostic flags with their values', () => {
    const { argv, ignored } = translateGoArgv(
      [
        '-port',
        '8009',
        '-matrixdomain=photon.test',
        '-debug',
        '--vmodule',
        'rest=5',
        '-pprof',
        '-pprofport=6060',
        '-logfile',
        'x.log',
        '-verbosity',
        '5',
        '-V',
      ],
      ['out'],
    );
    assert.deepEqual(argv, ['--port', '8009', '--matrixdomain=photon.test', '--logfile', 'x.log', '--verbosity', '5', '-V']);
    assert.deepEqual(ignored, ['--debug', '--vmodule', '--pprof', '--pprofport']);
  });

  it('leaves values, short flags and unknown words alone', () => {
    assert.deepEqual(
      translateGoArgv(['genconfig', '-out', '/srv', '--sharesecret', '-x', '-bogus', 'users', 'show', '0xab'], ['out']).argv,
      ['genconfig', '--out', '/srv', '--sharesecret', '-x', '-bogus', 'users', 'show', '0xab'],
    );
  });
});

describe("the Go original's registration.yaml", () => {
  const goDir = (): string => {
    const dir = tempDir('regservice-godir-');
    copyFileSync(join(FIXTURES, 'registration.yaml'), join(dir, 'registration.yaml'));
    return dir;
  };
  const sources = (commandLine: Record<string, string>) => ({ commandLine, environment: {}, configFile: undefined });

  it('gives the tokens to a command line that names no registration, below the flags', () => {
    const dir = goDir();
    const { settings, warnings } = loadSettingsForGoRunScript(
      sources({ matrixdomain: 'photon.test', sharesecret: 's' }),
      { requireSecrets: true },
      dir,
    );
    assert.equal(settings.asToken, 'Y4E8U2I6O0P3A7S1D5F9G2H6J0K4L8Z3X7C1V5B9');
    assert.equal(settings.hsToken, '8GZ2C6V0T4N1Q7R3X9B5M2K8J4H6F0D1S7A3P9L5');
    assert.equal(settings.appserviceId, '3K7QW2ZP5M-photon.test');
    assert.ok(
      warnings.some((warning) => /using the Go original's registration .*registration\.yaml \(id 3K7QW2ZP5M-photon\.test\)/.test(warning)),
    );
    assert.ok(warnings.some((warning) => /takes in every user \(the Go original's '@\.\*'\)/.test(warning)));
    const same = loadSettingsForGoRunScript(
      sources({ matrixdomain: 'photon.test', sharesecret: 's', astoken: 'Y4E8U2I6O0P3A7S1D5F9G2H6J0K4L8Z3X7C1V5B9' }),
      { requireSecrets: true },
      dir,
    );
    assert.equal(same.settings.appserviceId, '3K7QW2ZP5M-photon.test', 'flags that agree with the file');
  });

  it('refuses tokens on the command line that contradict it, and takes no file of another shape', () => {
    const dir = goDir();
    assert.throws(
      () =>
        loadSettingsForGoRunScript(
          sources({ matrixdomain: 'photon.test', sharesecret: 's', hstoken: 'another' }),
          { requireSecrets: true },
          dir,
        ),
      (error: unknown) => error instanceof SettingsError && /hs_token given differ from the Go original's registration/.test(error.message),
    );
    assert.equal(findGoRegistration(dir, 'other.test'), undefined, 'made for another domain');
    writeFileSync(
      join(dir, 'registration.yaml'),
      'id: bridge\nurl: http://127.0.0.1:9000\nas_token: a\nhs_token: h\nsender_localpart: bridge\n',
    );
    assert.equal(findGoRegistration(dir, 'photon.test'), undefined, "a bridge's registration");
    assert.throws(
      () => loadSettingsForGoRunScript(sources({ matrixdomain: 'photon.test', sharesecret: 's' }), { requireSecrets: true }, dir),
      (error: unknown) =>
        error instanceof SettingsError &&
        /registration\.yaml belongs to another application service \(id bridge, users none\), not to this one/.test(error.message) &&
        /give this service's registration with --registration FILE .* or its tokens with --astoken and --hstoken/.test(error.message),
      "the bridge's file is not named as the one to give",
    );
  });

  it("stops the generated run.sh's form (tokens, no shared secret) with one line naming --sharesecret-file", () => {
    const generated = { matrixdomain: 'photon.test', astoken: 'A', hstoken: 'H' };
    assert.throws(
      () => loadSettingsForGoRunScript(sources(generated), { requireSecrets: true }, tempDir('regservice-nogo-')),
      (error: unknown) =>
        error instanceof SettingsError &&
        !error.message.includes('\n') &&
        /Go original's generated run\.sh .*--sharesecret-file/.test(error.message),
    );
  });
});
