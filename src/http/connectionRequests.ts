import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { retryLater } from '../protocol/matrixError.js';
import { sendMatrixError } from './errorResponses.js';

/**
 * Requests of one connection handled at once. A Photon node sends one registration at a time, and nginx does not
 * pipeline: past this, one client could hand the primary many registrations at once over a single connection.
 */
export const MAX_IN_PROGRESS_PER_CONNECTION = 4;
/** Pipelined requests of one connection that wait for their turn; past this each is answered 429 at once, in order. */
export const MAX_WAITING_PER_CONNECTION = 32;

interface ConnectionState {
  /** The requests being handled: one whose body is still arriving can never complete once the parser fails. */
  readonly handling: Set<IncomingMessage>;
  readonly waiting: (() => void)[];
  /** What to call for each request being handled if the connection closes first: its answer may never be sent. */
  readonly gone: Set<() => void>;
  closed: boolean;
  /** A client error's answer, sent once the requests before it are answered. */
  clientError?: () => void;
}

export interface ConnectionRequests {
  /**
   * Runs `handle` for this request now, or once the connection's earlier requests leave it room; never once the
   * connection is closed. `onGone` registers what to do if the connection closes before this request's answer went
   * out: an answer waiting for its turn then gets neither 'finish' nor 'close'.
   */
  request(req: IncomingMessage, res: ServerResponse, handle: (onGone: (callback: () => void) => void) => void): void;
  /**
   * A request the HTTP parser refused on `socket`: `answer` runs once every earlier request of the connection is
   * answered, so that their answers (a 200 among them) go out first, in order; those that never arrive whole (a body
   * too slow, or the client's end first) are not waited for.
   */
  clientError(socket: Duplex, answer: () => void): void;
  /** Whether `req` is all its connection has in hand: no other request is being handled or waits, no error's answer. */
  alone(req: IncomingMessage): boolean;
}

/**
 * What one connection may ask at once. Node answers pipelined requests in order whatever order they finish in; this
 * bounds how many are handled at once and how many wait, and holds a parse error's answer behind them.
 */
export function connectionRequests(
  limits: { readonly maxInProgress: number; readonly maxWaiting: number } = {
    maxInProgress: MAX_IN_PROGRESS_PER_CONNECTION,
    maxWaiting: MAX_WAITING_PER_CONNECTION,
  },
): ConnectionRequests {
  // Dropped with its connection: requests still waiting when it closes are never handled (nobody would get the answer).
  const states = new WeakMap<object, ConnectionState>();
  const stateOf = (socket: Duplex): ConnectionState => {
    let state = states.get(socket);
    if (state === undefined) {
      const created: ConnectionState = { handling: new Set(), waiting: [], gone: new Set(), closed: socket.destroyed };
      socket.once('close', () => {
        created.closed = true;
        created.waiting.length = 0;
        for (const callback of [...created.gone]) callback();
        created.gone.clear();
      });
      states.set(socket, created);
      state = created;
    }
    return state;
  };
  /**
   * A client error's answer goes out once nothing ahead of it can still be answered: every request being handled has
   * been (or never arrived whole: its body will not come after the parser failed), and none waits.
   */
  const answerErrorWhenDue = (state: ConnectionState): void => {
    if (state.clientError === undefined || state.waiting.length > 0) return;
    for (const req of state.handling) if (req.complete) return;
    const answer = state.clientError;
    delete state.clientError;
    answer();
  };
  const done = (state: ConnectionState): void => {
    state.waiting.shift()?.();
    answerErrorWhenDue(state);
  };

  return {
    request(req, res, handle) {
      const state = stateOf(req.socket);
      const start = (): void => {
        if (state.closed) return;
        const callbacks: (() => void)[] = [];
        let ended = false;
        const end = (): void => {
          if (ended) return;
          ended = true;
          state.handling.delete(req);
          state.gone.delete(gone);
          done(state);
        };
        const gone = (): void => {
          end();
          for (const callback of callbacks) callback();
        };
        state.gone.add(gone);
        state.handling.add(req);
        res.once('finish', end);
        res.once('close', end);
        handle((callback) => callbacks.push(callback));
      };
      if (state.handling.size < limits.maxInProgress) start();
      else if (state.waiting.length < limits.maxWaiting) state.waiting.push(start);
      else sendMatrixError(res, retryLater(429, 'M_LIMIT_EXCEEDED', 'too many requests at once on one connection', 1000));
    },
    alone(req) {
      const state = states.get(req.socket);
      // `req` itself is among those being handled.
      return state === undefined || (state.handling.size <= 1 && state.waiting.length === 0 && state.clientError === undefined);
    },
    clientError(socket, answer) {
      const state = states.get(socket);
      if (state === undefined) answer();
      else {
        state.clientError = answer;
        answerErrorWhenDue(state);
      }
    },
  };
}
