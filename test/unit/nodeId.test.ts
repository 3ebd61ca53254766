import { strict as assert } from 'node:assert';
import { describe, it } from '../support/timedTests.js';
import { displaynamePrefix, isNodeLocalpart, nodeLocalpartOf, userIdFor } from '../../src/protocol/nodeId.js';

const LOCALPART = `0x${'ab'.repeat(20)}`;

describe('node ids', () => {
  it('knows a node localpart: 0x and 40 lower-case hex, nothing else', () => {
    assert.equal(isNodeLocalpart(LOCALPART), true);
    for (const value of [
      LOCALPART.toUpperCase().replace('0X', '0x'),
      `0x${'a'.repeat(39)}`,
      `0x${'a'.repeat(41)}`,
      `1x${'a'.repeat(40)}`,
      12,
      undefined,
    ]) {
      assert.equal(isNodeLocalpart(value), false, String(value));
    }
  });

  it('maps between a localpart and its user id on this server only', () => {
    assert.equal(userIdFor(LOCALPART, 'hs.example.org:8448'), `@${LOCALPART}:hs.example.org:8448`);
    assert.equal(nodeLocalpartOf(`@${LOCALPART}:hs.example.org:8448`, 'hs.example.org:8448'), LOCALPART);
    for (const userId of [
      `@${LOCALPART}:other.org`,
      `@${LOCALPART}:hs.example.org`,
      `@${LOCALPART.toUpperCase()}:hs.example.org:8448`,
      `@${LOCALPART}x:hs.example.org:8448`,
      '@admin:hs.example.org:8448',
      null,
    ]) {
      assert.equal(nodeLocalpartOf(userId, 'hs.example.org:8448'), undefined, String(userId));
    }
  });

  it('gives the displayname prefix: the first 4 hex of the address', () => {
    assert.equal(displaynamePrefix(`0x1234${'0'.repeat(36)}`), '1234');
  });
});
