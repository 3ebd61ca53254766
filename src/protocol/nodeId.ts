/** The rules of a node's identity on the homeserver: one home for each. */

/** A node's localpart: `0x` and its 40-hex address, lower case. As a regex source, for Synapse's namespace too. */
export const NODE_LOCALPART_PATTERN = '0x[0-9a-f]{40}';
const NODE_LOCALPART = new RegExp(`^${NODE_LOCALPART_PATTERN}$`);
const NODE_LOCALPART_LENGTH = 42;

/** The displayname starts with this many hex characters of the address, then `-` and the signature. */
export const DISPLAYNAME_PREFIX_LENGTH = 4;

export function isNodeLocalpart(value: unknown): value is string {
  return typeof value === 'string' && NODE_LOCALPART.test(value);
}

export function userIdFor(localpart: string, serverName: string): string {
  return `@${localpart}:${serverName}`;
}

/** The node localpart of `userId` when it is a node's user id on `serverName`, else undefined. */
export function nodeLocalpartOf(userId: unknown, serverName: string): string | undefined {
  if (typeof userId !== 'string' || userId.length !== 1 + NODE_LOCALPART_LENGTH + 1 + serverName.length) return undefined;
  const localpart = userId.slice(1, 1 + NODE_LOCALPART_LENGTH);
  return userId === userIdFor(localpart, serverName) && isNodeLocalpart(localpart) ? localpart : undefined;
}

/** What a node's displayname must start with: the first hex characters of its address. */
export function displaynamePrefix(localpart: string): string {
  return localpart.slice(2, 2 + DISPLAYNAME_PREFIX_LENGTH);
}
