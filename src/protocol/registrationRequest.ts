import { badJson, forbidden, invalidParam, missingParam } from './matrixError.js';
import { DISPLAYNAME_PREFIX_LENGTH, displaynamePrefix, isNodeLocalpart, userIdFor } from './nodeId.js';
import { keccak256Utf8 } from './keccak.js';
import { parseSignatureHex, SIGNATURE_HEX_LENGTH, type RecoverableSignature } from './signature.js';
import type { AddressRecoverer } from './addressRecovery.js';

/** A registration request whose fields are well formed; signatures not yet checked. */
export interface RegistrationRequest {
  readonly localpart: string;
  readonly displayname: string;
  readonly password: string;
  readonly address: Uint8Array;
  readonly passwordSignature: RecoverableSignature;
  readonly displaynameSignature: RecoverableSignature;
}

const DISPLAYNAME_LENGTH = DISPLAYNAME_PREFIX_LENGTH + 1 + SIGNATURE_HEX_LENGTH;

function stringField(body: Record<string, unknown>, field: string): string {
  if (!Object.hasOwn(body, field) || body[field] === undefined || body[field] === null) {
    throw missingParam(`${field} is required`);
  }
  const value = body[field];
  if (typeof value !== 'string') throw invalidParam(`${field} must be a string`);
  return value;
}

/** Checks the shape of `{localpart, displayname, password}`; throws a 400 MatrixError naming the field. */
export function parseRegistrationRequest(body: unknown): RegistrationRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw badJson('request body must be a JSON object with localpart, displayname and password');
  }
  const fields = body as Record<string, unknown>;
  const localpart = stringField(fields, 'localpart');
  const displayname = stringField(fields, 'displayname');
  const password = stringField(fields, 'password');

  if (!isNodeLocalpart(localpart)) {
    throw invalidParam('localpart must be 0x followed by 40 lowercase hex characters (the node address)');
  }
  const passwordSignature = parseSignatureHex(password, 'password');

  const expectedPrefix = displaynamePrefix(localpart);
  if (
    displayname.length !== DISPLAYNAME_LENGTH ||
    displayname[DISPLAYNAME_PREFIX_LENGTH] !== '-' ||
    displayname.slice(0, DISPLAYNAME_PREFIX_LENGTH).toLowerCase() !== expectedPrefix
  ) {
    throw invalidParam(`displayname must be "${expectedPrefix}-" followed by a ${SIGNATURE_HEX_LENGTH}-hex signature`);
  }
  const displaynameSignature = parseSignatureHex(displayname.slice(DISPLAYNAME_PREFIX_LENGTH + 1), 'displayname');

  return {
    localpart,
    displayname,
    password,
    address: Buffer.from(localpart.slice(2), 'hex'),
    passwordSignature,
    displaynameSignature,
  };
}

export type RegistrationVerifier = (request: RegistrationRequest) => void;

function sameAddress(a: Uint8Array | null, b: Uint8Array): boolean {
  return a !== null && Buffer.compare(a, b) === 0;
}

/**
 * Proof of key possession: the password signs keccak256(server name) and the displayname
 * signs keccak256("@localpart:server name"), both by the address in localpart.
 */
export function createRegistrationVerifier(serverName: string, recover: AddressRecoverer): RegistrationVerifier {
  const serverNameHash = keccak256Utf8(serverName);
  return (request) => {
    if (!sameAddress(recover(serverNameHash, request.passwordSignature), request.address)) {
      throw forbidden(`password: signature over the server name "${serverName}" was not made by ${request.localpart}`);
    }
    const userIdHash = keccak256Utf8(userIdFor(request.localpart, serverName));
    if (!sameAddress(recover(userIdHash, request.displaynameSignature), request.address)) {
      throw forbidden(`displayname: signature over "${userIdFor(request.localpart, serverName)}" was not made by ${request.localpart}`);
    }
  };
}
