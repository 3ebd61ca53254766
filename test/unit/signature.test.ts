import { strict as assert } from 'node:assert';
import { describe, it } from '../support/timedTests.js';
import { parseSignatureHex } from '../../src/protocol/signature.js';
import { MatrixError } from '../../src/protocol/matrixError.js';
import { privateKeyBytes } from '../../src/protocol/privateKey.js';
import { randomPrivateKey, signRegistration } from '../../src/protocol/signRegistration.js';

const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const hex32 = (value: bigint): string => value.toString(16).padStart(64, '0');
const sig = (r: bigint, s: bigint, v: number): string => hex32(r) + hex32(s) + v.toString(16).padStart(2, '0');

function rejects(hex: string, message: RegExp): void {
  assert.throws(
    () => parseSignatureHex(hex, 'password'),
    (error: unknown) =>
      error instanceof MatrixError && error.status === 400 && error.errcode === 'M_INVALID_PARAM' && message.test(error.message),
  );
}

describe('parseSignatureHex', () => {
  it('accepts r‖s‖v with v 27 or 28 and maps v to the recovery id', () => {
    assert.equal(parseSignatureHex(sig(5n, 7n, 27), 'password').recoveryId, 0);
    const parsed = parseSignatureHex(sig(5n, 7n, 28), 'password');
    assert.equal(parsed.recoveryId, 1);
    assert.equal(Buffer.from(parsed.compact).toString('hex'), hex32(5n) + hex32(7n));
  });

  it('accepts upper-case hex, as Go hex decoding does', () => {
    assert.equal(parseSignatureHex(sig(0xabn, 7n, 27).toUpperCase(), 'password').recoveryId, 0);
  });

  it('rejects any length but 130 and any non-hex character, naming the field', () => {
    rejects(sig(5n, 7n, 27).slice(0, 128), /password: .*130 hex/);
    rejects(sig(5n, 7n, 27) + '00', /130 hex/);
    rejects('', /130 hex/);
    rejects('g' + sig(5n, 7n, 27).slice(1), /130 hex/);
    rejects(' ' + sig(5n, 7n, 27).slice(1), /130 hex/);
  });

  it('rejects v other than 27 or 28', () => {
    for (const v of [0, 1, 26, 29, 255]) rejects(sig(5n, 7n, v), /v must be 27 or 28/);
  });

  it('rejects r or s of zero or not below the curve order', () => {
    rejects(sig(0n, 7n, 27), /out of range/);
    rejects(sig(5n, 0n, 27), /out of range/);
    rejects(sig(N, 7n, 27), /out of range/);
    rejects(sig(5n, N, 27), /out of range/);
  });

  it('rejects high-s (malleable) signatures and accepts s = n/2 exactly', () => {
    const half = N >> 1n;
    assert.doesNotThrow(() => parseSignatureHex(sig(5n, half, 27), 'password'));
    rejects(sig(5n, half + 1n, 27), /high s/);
    rejects(sig(5n, N - 1n, 28), /high s/);
  });
});

describe('the private key a node gives', () => {
  it('is 32 bytes or 64 hex characters with an optional 0x, signing alike; anything else is a clear TypeError', () => {
    const key = randomPrivateKey();
    const hex = Buffer.from(key).toString('hex');
    const expected = signRegistration(key, 'example.org');
    for (const given of [hex, `0x${hex}`, `0X${hex.toUpperCase()}\n`]) assert.deepEqual(signRegistration(given, 'example.org'), expected);
    assert.deepEqual(privateKeyBytes(hex), key);
    assert.throws(() => signRegistration(hex.slice(2), 'example.org'), { name: 'TypeError', message: /64 hex characters .*got 62/ });
    assert.throws(() => signRegistration(key.subarray(1), 'example.org'), { name: 'TypeError', message: /32 bytes, got 31/ });
    assert.throws(() => signRegistration('0'.repeat(64), 'example.org'), { name: 'TypeError', message: /not a secp256k1 private key/ });
    assert.throws(() => privateKeyBytes(42 as unknown as string), { name: 'TypeError', message: /Uint8Array of 32 bytes or a string/ });
    assert.throws(
      () => signRegistration(`${hex.slice(0, 63)}z`, 'example.org'),
      (error: Error) => !error.message.includes(hex.slice(0, 63)),
    );
  });
});
