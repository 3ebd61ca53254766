import { createRequire } from 'node:module';
import { secp256k1 as nobleSecp256k1 } from './nobleSecp256k1.js';
import { keccak256 } from './keccak.js';
import type { RecoverableSignature } from './signature.js';

/** Returns the 20-byte address that signed `messageHash`, or null when nothing can be recovered. */
export type AddressRecoverer = (messageHash: Uint8Array, signature: RecoverableSignature) => Uint8Array | null;

export type RecoveryImplementation = 'libsecp256k1' | 'noble';

export interface AddressRecovery {
  readonly implementation: RecoveryImplementation;
  readonly recover: AddressRecoverer;
}

interface NativeSecp256k1 {
  ecdsaRecover(signature: Uint8Array, recid: number, message: Uint8Array, compressed: boolean): Uint8Array;
}

function addressOfUncompressedKey(publicKey: Uint8Array): Uint8Array {
  // An address is the last 20 bytes of keccak256(X‖Y), without the 0x04 prefix.
  return keccak256(publicKey.subarray(1)).subarray(12);
}

function loadNative(): NativeSecp256k1 | null {
  try {
    const require = createRequire(import.meta.url);
    // `secp256k1/bindings` is the libsecp256k1 addon alone; the package's main entry would
    // silently fall back to `elliptic`, and we prefer @noble/secp256k1 as the portable fallback.
    return require('secp256k1/bindings') as NativeSecp256k1;
  } catch {
    return null;
  }
}

export function nativeRecovery(): AddressRecovery | null {
  const native = loadNative();
  if (native === null) return null;
  return {
    implementation: 'libsecp256k1',
    recover(messageHash, signature) {
      try {
        return addressOfUncompressedKey(native.ecdsaRecover(signature.compact, signature.recoveryId, messageHash, false));
      } catch {
        return null;
      }
    },
  };
}

export function nobleRecovery(): AddressRecovery {
  return {
    implementation: 'noble',
    recover(messageHash, signature) {
      try {
        const recovered = new Uint8Array(65);
        recovered[0] = signature.recoveryId;
        recovered.set(signature.compact, 1);
        return addressOfUncompressedKey(nobleSecp256k1.recoverPublicKey(recovered, messageHash, { prehash: false, isCompressed: false }));
      } catch {
        return null;
      }
    },
  };
}

/** libsecp256k1 through its prebuilt addon when it loads, else the pure-JS @noble/secp256k1. */
export function createAddressRecovery(): AddressRecovery {
  return nativeRecovery() ?? nobleRecovery();
}
