import { invalidParam } from './matrixError.js';

/** A 65-byte Ethereum-style signature r‖s‖v split for recovery. */
export interface RecoverableSignature {
  /** r‖s, 64 bytes. */
  readonly compact: Uint8Array;
  /** 0 or 1 (v − 27). */
  readonly recoveryId: 0 | 1;
}

export const SIGNATURE_HEX_LENGTH = 130;

// The curve order and its half, big-endian: 32-byte numbers compare as their bytes do (no BigInt per request).
const SECP256K1_N = Buffer.from('fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141', 'hex');
const SECP256K1_HALF_N = Buffer.from('7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0', 'hex');
const ZERO = Buffer.alloc(32);
const HEX_130 = /^[0-9a-fA-F]{130}$/;

/** 0 < value < n, for a 32-byte big-endian number. */
const inRange = (value: Buffer): boolean => value.compare(ZERO) > 0 && value.compare(SECP256K1_N) < 0;

/**
 * Parses `r‖s‖v` as 130 hex characters. Rejects anything a signer following the protocol
 * cannot produce: wrong length, v other than 27/28, r or s out of range, and high-s
 * (malleable) signatures.
 */
export function parseSignatureHex(hex: string, field: string): RecoverableSignature {
  if (hex.length !== SIGNATURE_HEX_LENGTH || !HEX_130.test(hex)) {
    throw invalidParam(`${field}: signature must be exactly ${SIGNATURE_HEX_LENGTH} hex characters (r‖s‖v)`);
  }
  const bytes = Buffer.from(hex, 'hex');
  const v = bytes[64];
  if (v !== 27 && v !== 28) {
    throw invalidParam(`${field}: signature v must be 27 or 28`);
  }
  const compact = bytes.subarray(0, 64);
  const s = bytes.subarray(32, 64);
  if (!inRange(bytes.subarray(0, 32)) || !inRange(s)) {
    throw invalidParam(`${field}: signature r or s is out of range`);
  }
  if (s.compare(SECP256K1_HALF_N) > 0) {
    throw invalidParam(`${field}: signature has a high s value (malleable); sign with a low-s signer`);
  }
  return { compact, recoveryId: v === 27 ? 0 : 1 };
}
