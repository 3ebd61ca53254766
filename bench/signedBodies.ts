import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { keccak256, keccak256Utf8 } from '../src/protocol/keccak.js';
import { displaynamePrefix, userIdFor } from '../src/protocol/nodeId.js';

interface NativeSecp256k1 {
  privateKeyVerify(key: Uint8Array): boolean;
  publicKeyCreate(key: Uint8Array, compressed: boolean): Uint8Array;
  ecdsaSign(hash: Uint8Array, key: Uint8Array): { signature: Uint8Array; recid: number };
}

// libsecp256k1 signs in a tenth of the time @noble/secp256k1 takes: tens of thousands of nodes are made per run.
const native = createRequire(import.meta.url)('secp256k1') as NativeSecp256k1;

const signHex = (key: Uint8Array, hash: Uint8Array): string => {
  const { signature, recid } = native.ecdsaSign(hash, key);
  return Buffer.from(signature).toString('hex') + (27 + recid).toString(16);
};

/** `count` registration bodies of fresh keys for `serverName`, as Photon nodes send them, JSON-encoded. */
export function signedBodies(count: number, serverName: string): string[] {
  const serverHash = keccak256Utf8(serverName);
  return Array.from({ length: count }, () => {
    let key: Buffer;
    do key = randomBytes(32);
    while (!native.privateKeyVerify(key));
    const publicKey = native.publicKeyCreate(key, false);
    const localpart = `0x${Buffer.from(keccak256(publicKey.subarray(1)).subarray(12)).toString('hex')}`;
    return JSON.stringify({
      localpart,
      password: signHex(key, serverHash),
      displayname: `${displaynamePrefix(localpart)}-${signHex(key, keccak256Utf8(userIdFor(localpart, serverName)))}`,
    });
  });
}
