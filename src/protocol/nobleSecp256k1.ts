import * as secp256k1 from '@noble/secp256k1';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';

// @noble/secp256k1 brings no hash functions of its own; its synchronous signing (RFC 6979) needs these two.
secp256k1.hashes.sha256 = sha256;
secp256k1.hashes.hmacSha256 = (key, message) => hmac(sha256, key, message);

/** The audited pure-JavaScript secp256k1: node-side signing, and recovery where the libsecp256k1 addon cannot load. */
export { secp256k1 };
