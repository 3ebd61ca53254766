import { secp256k1 } from './nobleSecp256k1.js';
import { keccak256, keccak256Utf8 } from './keccak.js';
import { displaynamePrefix, userIdFor } from './nodeId.js';
import { privateKeyBytes, type PrivateKey } from './privateKey.js';

export interface RegistrationBody {
  readonly localpart: string;
  readonly displayname: string;
  readonly password: string;
}

/** Signs `messageHash` and returns r‖s‖v as hex, v = 27 or 28, low s: what a Photon node sends. */
export function signHashHex(privateKey: Uint8Array, messageHash: Uint8Array): string {
  const recovered = secp256k1.sign(messageHash, privateKey, { prehash: false, lowS: true, format: 'recovered' });
  const v = 27 + (recovered[0] ?? 0);
  return Buffer.from(recovered.subarray(1)).toString('hex') + v.toString(16);
}

export function addressOfPrivateKey(privateKey: PrivateKey): string {
  const publicKey = secp256k1.getPublicKey(privateKeyBytes(privateKey), false);
  return '0x' + Buffer.from(keccak256(publicKey.subarray(1)).subarray(12)).toString('hex');
}

/** Builds the body a Photon node POSTs to /regapp/1/register for `serverName`. */
export function signRegistration(key: PrivateKey, serverName: string): RegistrationBody {
  const privateKey = privateKeyBytes(key);
  const localpart = addressOfPrivateKey(privateKey);
  const password = signHashHex(privateKey, keccak256Utf8(serverName));
  const displaynameSignature = signHashHex(privateKey, keccak256Utf8(userIdFor(localpart, serverName)));
  return { localpart, password, displayname: `${displaynamePrefix(localpart)}-${displaynameSignature}` };
}

export function randomPrivateKey(): Uint8Array {
  return secp256k1.utils.randomSecretKey();
}
