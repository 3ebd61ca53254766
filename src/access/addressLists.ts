import { readTrustedFile, UntrustedFileError } from '../config/trustedFile.js';
import { forbidden } from '../protocol/matrixError.js';
import { isNodeLocalpart } from '../protocol/nodeId.js';

/** Throws 403 when a node address may not register here. */
export type AddressPolicy = (localpart: string) => void;

export interface AddressListFiles {
  readonly allowFile?: string | undefined;
  readonly denyFile?: string | undefined;
}

/** One 0x address per line; blank lines and # comments are ignored; case does not matter. */
export function parseAddressList(text: string, name: string): Set<string> {
  const addresses = new Set<string>();
  text.split('\n').forEach((raw, index) => {
    const line = raw.replace(/#.*/, '').trim().toLowerCase();
    if (line === '') return;
    if (!isNodeLocalpart(line)) throw new Error(`${name} line ${index + 1}: not an address: "${raw.trim()}"`);
    addresses.add(line);
  });
  return addresses;
}

/** Reads both files; throws with the file and line of the first problem. */
export function loadAddressPolicy(files: AddressListFiles): { policy: AddressPolicy; summary: string } {
  const read = (path: string | undefined): Set<string> | undefined => {
    if (path === undefined) return undefined;
    let text: string;
    try {
      text = readTrustedFile(path, 'address list');
    } catch (error) {
      if (error instanceof UntrustedFileError) throw error;
      throw new Error(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    return parseAddressList(text, path);
  };
  const allow = read(files.allowFile);
  const deny = read(files.denyFile);
  return {
    summary: `allow list: ${allow === undefined ? 'none (everyone)' : `${allow.size} addresses`}; deny list: ${deny?.size ?? 0} addresses`,
    policy: (localpart) => {
      if (deny?.has(localpart) === true) throw forbidden('this address may not register here');
      if (allow !== undefined && !allow.has(localpart)) throw forbidden('this address is not on the list of nodes that may register here');
    },
  };
}
