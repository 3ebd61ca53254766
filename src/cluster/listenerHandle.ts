import type { Worker } from 'node:cluster';
import type { Server } from 'node:net';

/** The message the primary's listening socket travels with to a worker. */
const LISTENER = 'regservice:listener';

/**
 * The listening socket as it travels: the server's own handle (which `server.listen(handle)` takes), not the server.
 * A server sent whole arrives listening in a server of Node's, which would accept connections before the worker's own
 * server takes over the handle, and leave them unanswered. A cluster worker listens on a handle itself, not through
 * the primary, since nodejs/node#52056 (in every Node.js the package's `engines` admit).
 */
export type ListenerHandle = object;

/** The handle `message` brought, when it is the primary's listening socket. */
export function listenerIn(message: unknown, handle: unknown): ListenerHandle | undefined {
  return message === LISTENER && typeof handle === 'object' && handle !== null ? handle : undefined;
}

/** Hands `listener`'s socket to `worker`, which then accepts from it beside the primary. */
export function sendListener(worker: Worker, listener: Server, done: (error: Error | null) => void): void {
  const handle = (listener as unknown as { _handle: Server | null })._handle;
  if (handle === null) done(new Error('the listener is closed'));
  else worker.send(LISTENER, handle, done);
}
