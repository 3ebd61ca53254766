import { secp256k1 } from './nobleSecp256k1.js';

/** A node's secp256k1 private key: 32 bytes, or 64 hex characters with an optional 0x (as a key file holds it). */
export type PrivateKey = Uint8Array | string;

/** The key's 32 bytes; a TypeError saying what a key must be for anything else, the key itself never quoted. */
export function privateKeyBytes(key: PrivateKey): Uint8Array {
  let bytes: Uint8Array;
  if (typeof key === 'string') {
    const hex = key.trim().replace(/^0x/i, '');
    if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
      throw new TypeError(`a private key given as text must be 64 hex characters (optionally 0x first), got ${hex.length} characters`);
    }
    bytes = Uint8Array.from(Buffer.from(hex, 'hex'));
  } else if (key instanceof Uint8Array) {
    if (key.length !== 32) throw new TypeError(`a private key must be 32 bytes, got ${key.length}`);
    bytes = key;
  } else {
    throw new TypeError('a private key must be a Uint8Array of 32 bytes or a string of 64 hex characters');
  }
  if (!secp256k1.utils.isValidSecretKey(bytes)) throw new TypeError('not a secp256k1 private key (zero, or not below the curve order)');
  return bytes;
}
