import { HeldBackError, HomeserverError, MatrixError, StoreUnavailableError } from '../protocol/matrixError.js';
import type { RegisteredUser } from '../homeserver/registrar.js';

/** What became of a registration request, as metrics count it and logs name it. */
export type Outcome =
  | 'registered'
  | 'password_reset'
  | 'homeserver_error'
  | 'store_unavailable'
  | 'internal_error'
  | 'forbidden'
  | 'invalid'
  | 'rate_limited'
  | 'already_registered'
  | 'busy'
  | 'account_limited';

export function outcomeOfUser(user: RegisteredUser): Outcome {
  return user.passwordReset === true ? 'password_reset' : 'registered';
}

/** The outcome of a refused or failed request: by the error's kind and errcode, not its status. */
export function outcomeOfError(error: MatrixError | undefined): Outcome {
  if (error === undefined) return 'internal_error';
  if (error instanceof HomeserverError) return 'homeserver_error';
  if (error instanceof StoreUnavailableError) return 'store_unavailable';
  if (error instanceof HeldBackError) return error.status === 429 ? 'account_limited' : 'busy';
  switch (error.errcode) {
    case 'M_USER_IN_USE':
      return 'already_registered';
    case 'M_FORBIDDEN':
      return 'forbidden';
    case 'M_LIMIT_EXCEEDED':
      return 'rate_limited';
    default:
      // Our own 503: too many registrations waiting for the homeserver, or one of this node's in progress on another gate.
      return error.status === 503 ? 'busy' : 'invalid';
  }
}

/**
 * Outcomes that get a log line each: an account made, or a failure an operator must see. Every other answer is a
 * refusal, counted and summarized, store_unavailable included: during a database outage every request, forged and
 * empty ones too, ends so, and one line each would let anyone decide the log's volume.
 */
const LOGGED_EACH: ReadonlySet<Outcome> = new Set(['registered', 'password_reset', 'homeserver_error', 'internal_error']);

export function isLoggedEach(outcome: Outcome): boolean {
  return LOGGED_EACH.has(outcome);
}
