import { keccak_256 } from '@noble/hashes/sha3.js';

const utf8 = new TextEncoder();

/** keccak256 of the UTF-8 bytes of `text`: raw Keccak, no Ethereum message prefix. */
export function keccak256Utf8(text: string): Uint8Array {
  return keccak_256(utf8.encode(text));
}

export function keccak256(bytes: Uint8Array): Uint8Array {
  return keccak_256(bytes);
}
