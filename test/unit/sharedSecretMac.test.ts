import { strict as assert } from 'node:assert';
import { describe, it } from '../support/timedTests.js';
import { sharedSecretMac } from '../../src/protocol/sharedSecretMac.js';

const NONCE =
  'b472145df6b07d1b2cfd08e748d432ff1c085f97e6f8f36bbc1ea6205e4e78677d97cd519e812510d95a2610998b1cb1ca3edbf957ab5e3f8f331fc455d37ccf';

describe('sharedSecretMac', () => {
  it("matches the Go original's vector", () => {
    assert.equal(
      sharedSecretMac('shared', { nonce: NONCE, username: 'sid1', password: 'pass', admin: false }),
      'd76fcd0674283fa57f17fb56cbc42b2208144dcb',
    );
  });
  it('changes with the admin flag', () => {
    assert.notEqual(
      sharedSecretMac('shared', { nonce: NONCE, username: 'sid1', password: 'pass', admin: true }),
      'd76fcd0674283fa57f17fb56cbc42b2208144dcb',
    );
  });
});
