import { strict as assert } from 'node:assert';
import { createRequire } from 'node:module';
import { describe, it } from '../support/timedTests.js';
import { createAddressRecovery, nativeRecovery, nobleRecovery, type AddressRecovery } from '../../src/protocol/addressRecovery.js';
import { keccak256Utf8 } from '../../src/protocol/keccak.js';
import { MatrixError } from '../../src/protocol/matrixError.js';
import { userIdFor } from '../../src/protocol/nodeId.js';
import { createRegistrationVerifier, parseRegistrationRequest } from '../../src/protocol/registrationRequest.js';
import { addressOfPrivateKey, randomPrivateKey, signRegistration } from '../../src/protocol/signRegistration.js';

const SERVER = 'transport01.smartmesh.cn';
const native = nativeRecovery();
const implementations: AddressRecovery[] = [nobleRecovery(), ...(native === null ? [] : [native])];

/** Signs with libsecp256k1 directly: a signer independent of the code under test. */
function libsecpSignHex(privateKey: Uint8Array, hash: Uint8Array): string {
  const secp = createRequire(import.meta.url)('secp256k1/bindings') as {
    ecdsaSign(msg: Uint8Array, key: Uint8Array): { signature: Uint8Array; recid: number };
  };
  const { signature, recid } = secp.ecdsaSign(hash, privateKey);
  return Buffer.from(signature).toString('hex') + (27 + recid).toString(16);
}

function expectError(run: () => void, status: number, errcode: string, message: RegExp): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof MatrixError, String(error));
    assert.equal(error.status, status);
    assert.equal(error.errcode, errcode);
    assert.match(error.message, message);
    return true;
  });
}

describe('keccak and addresses', () => {
  it('keccak256 is raw Keccak (the empty-string vector), not SHA3 or a prefixed hash', () => {
    assert.equal(Buffer.from(keccak256Utf8('')).toString('hex'), 'c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470');
  });
  it('derives the well-known address of private key 1', () => {
    const one = new Uint8Array(32);
    one[31] = 1;
    assert.equal(addressOfPrivateKey(one), '0x7e5f4552091a69125d5dfcb7b8c2659029395bdf');
  });
  it('uses libsecp256k1 on this machine', () => {
    assert.equal(createAddressRecovery().implementation, 'libsecp256k1');
  });
});

describe('parseRegistrationRequest', () => {
  const body = signRegistration(randomPrivateKey(), SERVER);

  it('accepts what a Photon node sends', () => {
    const request = parseRegistrationRequest(body);
    assert.equal(request.localpart, body.localpart);
    assert.equal(Buffer.from(request.address).toString('hex'), body.localpart.slice(2));
  });

  it('rejects a body that is not an object', () => {
    for (const bad of [null, undefined, 'x', 3, [body]]) {
      expectError(() => parseRegistrationRequest(bad), 400, 'M_BAD_JSON', /JSON object/);
    }
  });

  it('names a missing or mistyped field', () => {
    for (const field of ['localpart', 'displayname', 'password'] as const) {
      const { [field]: _omitted, ...rest } = body;
      expectError(() => parseRegistrationRequest(rest), 400, 'M_MISSING_PARAM', new RegExp(field));
      expectError(
        () => parseRegistrationRequest({ ...body, [field]: 42 }),
        400,
        'M_INVALID_PARAM',
        new RegExp(`${field} must be a string`),
      );
    }
  });

  it('ignores inherited properties such as __proto__ tricks', () => {
    const hostile = JSON.parse(
      `{"__proto__": {"localpart": "${body.localpart}"}, "displayname": "${body.displayname}", "password": "${body.password}"}`,
    ) as unknown;
    expectError(() => parseRegistrationRequest(hostile), 400, 'M_MISSING_PARAM', /localpart/);
  });

  it('requires localpart to be 0x and 40 lowercase hex', () => {
    const upper = '0x' + body.localpart.slice(2).toUpperCase();
    for (const localpart of [upper, body.localpart.slice(2), body.localpart + '0', '@' + body.localpart, '0x' + 'g'.repeat(40)]) {
      expectError(() => parseRegistrationRequest({ ...body, localpart }), 400, 'M_INVALID_PARAM', /localpart/);
    }
  });

  it('requires displayname to be the address prefix, a dash and a signature', () => {
    const signature = body.displayname.slice(5);
    const prefix = body.localpart.slice(2, 6);
    const wrongPrefix = prefix === '0000' ? '1111' : '0000';
    for (const displayname of [
      signature,
      `${wrongPrefix}-${signature}`,
      `${prefix}_${signature}`,
      `${prefix}-${signature}00`,
      `${prefix}-`,
    ]) {
      expectError(() => parseRegistrationRequest({ ...body, displayname }), 400, 'M_INVALID_PARAM', /displayname/);
    }
    assert.doesNotThrow(
      () => parseRegistrationRequest({ ...body, displayname: `${prefix.toUpperCase()}-${signature}` }),
      'a checksummed prefix is the same address',
    );
  });
});

for (const recovery of implementations) {
  describe(`createRegistrationVerifier (${recovery.implementation})`, () => {
    const verify = createRegistrationVerifier(SERVER, recovery.recover);

    it('accepts signatures made by an independent signer (libsecp256k1 ecdsaSign)', () => {
      const key = randomPrivateKey();
      const localpart = addressOfPrivateKey(key);
      const password = libsecpSignHex(key, keccak256Utf8(SERVER));
      const displayname = `${localpart.slice(2, 6)}-${libsecpSignHex(key, keccak256Utf8(userIdFor(localpart, SERVER)))}`;
      assert.doesNotThrow(() => verify(parseRegistrationRequest({ localpart, password, displayname })));
    });

    it("refuses another key's password with 403 naming the password", () => {
      const node = signRegistration(randomPrivateKey(), SERVER);
      const other = signRegistration(randomPrivateKey(), SERVER);
      expectError(() => verify(parseRegistrationRequest({ ...node, password: other.password })), 403, 'M_FORBIDDEN', /password/);
    });

    it('refuses a password signed for another server name', () => {
      const key = randomPrivateKey();
      const node = signRegistration(key, SERVER);
      const elsewhere = signRegistration(key, 'other.example.org');
      expectError(() => verify(parseRegistrationRequest({ ...node, password: elsewhere.password })), 403, 'M_FORBIDDEN', /password/);
    });

    it('refuses a displayname signature over another user id', () => {
      const key = randomPrivateKey();
      const node = signRegistration(key, SERVER);
      const elsewhere = signRegistration(key, 'other.example.org');
      expectError(
        () => verify(parseRegistrationRequest({ ...node, displayname: elsewhere.displayname })),
        403,
        'M_FORBIDDEN',
        /displayname/,
      );
    });

    it('refuses an Ethereum-prefixed (personal_sign) password', () => {
      const key = randomPrivateKey();
      const node = signRegistration(key, SERVER);
      const prefixed = libsecpSignHex(key, keccak256Utf8(`\x19Ethereum Signed Message:\n${SERVER.length}${SERVER}`));
      expectError(() => verify(parseRegistrationRequest({ ...node, password: prefixed })), 403, 'M_FORBIDDEN', /password/);
    });

    it('refuses a garbled signature (r = 1) with 403, whatever recovery makes of it', () => {
      const node = signRegistration(randomPrivateKey(), SERVER);
      const noPoint = '0'.repeat(63) + '1' + node.password.slice(64);
      let result: unknown;
      try {
        verify(parseRegistrationRequest({ ...node, password: noPoint }));
      } catch (error) {
        result = error;
      }
      assert.ok(result instanceof MatrixError && result.status === 403);
    });
  });
}
