import { nodeLocalpartOf } from '../protocol/nodeId.js';
import type { NodeStore } from '../store/nodeStore.js';

/** Whether a user id is one this service registered. */
export type UserQuery = (userId: string) => Promise<boolean>;

/** GET /users/{userId}: a user exists here only if this service registered it. */
export function createUserQuery(serverName: string, nodes: NodeStore): UserQuery {
  return async (userId) => {
    const localpart = nodeLocalpartOf(userId, serverName);
    return localpart !== undefined && (await nodes.get(localpart)) !== undefined;
  };
}
