const CREATED_NOTHING = new WeakSet<Error>();

/**
 * Marks a registrar's failure after which the homeserver surely holds no account made by this call: it answered and
 * refused, or the request never reached it. A timeout, a 5xx, a connection lost after sending, or a 200 the service
 * could not read stay unmarked: the account may exist.
 */
export function createdNothing<E extends Error>(error: E): E {
  CREATED_NOTHING.add(error);
  return error;
}

export function surelyCreatedNothing(error: unknown): boolean {
  return error instanceof Error && CREATED_NOTHING.has(error);
}
