import type { NodeStore } from '../store/nodeStore.js';

/** Whether a user id is one this service registered. */
export type UserQuery = (userId: string) => Promise<boolean>;

/** GET /users/{userId}: a user exists here only if this service registered it. */
export function createUserQuery(serverName: string, nodes: NodeStore): UserQuery {
  const pattern = /^@(0x[0-9a-f]{40}):(.+)$/;
  return async (userId) => {
    const match = pattern.exec(userId);
    return match?.[1] !== undefined && match[2] === serverName && (await nodes.get(match[1])) !== undefined;
  };
}
