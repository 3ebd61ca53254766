import { strict as assert } from 'node:assert';
import { chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from '../support/timedTests.js';
import { guessSynapseAccount } from '../../src/genconfig/synapseAccount.js';
import { tempDir } from '../support/tempDir.js';

const SERVICE = { name: 'matrix-regservice', uid: 4100, gid: 4100 };
const SYNAPSE_UID = 4200;

describe("Synapse's account, guessed from the files it owns", { skip: process.getuid?.() === 0 ? false : 'needs root to chown' }, () => {
  it('is the owner of its working directory when that is not root (Debian)', () => {
    const workdir = tempDir('regservice-synapse-home-');
    chownSync(workdir, SYNAPSE_UID, SYNAPSE_UID);
    const guess = guessSynapseAccount(workdir, [], workdir, SERVICE);
    assert.deepEqual(guess.kind === 'found' ? [guess.owner.uid, guess.from] : guess, [SYNAPSE_UID, workdir]);
  });

  it('looks past a root-owned configuration directory (Arch, Fedora) to the signing key or media store Synapse wrote', () => {
    const etc = tempDir('regservice-etc-synapse-');
    writeFileSync(join(etc, 'example.signing.key'), 'ed25519 a key\n');
    mkdirSync(join(etc, 'media'));
    chownSync(join(etc, 'media'), SYNAPSE_UID, SYNAPSE_UID);
    const guess = guessSynapseAccount(etc, ['example.signing.key', 'media', undefined], etc, SERVICE);
    assert.deepEqual(guess.kind === 'found' ? [guess.owner.uid, guess.from] : guess, [SYNAPSE_UID, join(etc, 'media')]);
  });

  it("cannot tell when everything it finds is root's and the service has an account of its own; root otherwise", () => {
    const etc = tempDir('regservice-etc-root-');
    writeFileSync(join(etc, 'example.signing.key'), 'ed25519 a key\n');
    const unknown = guessSynapseAccount(etc, ['example.signing.key'], etc, SERVICE);
    assert.match(unknown.kind === 'unknown' ? unknown.why : unknown.kind, /example\.signing\.key are root's, which does not tell/);
    const asRoot = guessSynapseAccount(etc, ['example.signing.key'], etc, { name: 'root', uid: 0, gid: 0 });
    assert.equal(asRoot.kind === 'found' ? asRoot.owner.uid : asRoot.kind, 0, 'the service as root: Synapse reads its files anyway');
    const noAccountYet = guessSynapseAccount(etc, ['example.signing.key'], etc, undefined);
    assert.equal(
      noAccountYet.kind === 'found' ? noAccountYet.owner.uid : noAccountYet.kind,
      0,
      "no service account yet: root's key, root's Synapse",
    );
    chownSync(join(etc, 'example.signing.key'), SYNAPSE_UID, SYNAPSE_UID);
    for (const service of [{ name: 'root', uid: 0, gid: 0 }, undefined]) {
      const guess = guessSynapseAccount(etc, ['example.signing.key'], etc, service);
      assert.equal(guess.kind === 'found' ? guess.owner.uid : guess.kind, SYNAPSE_UID, 'the signing key tells, whoever the service is');
    }
  });
});
