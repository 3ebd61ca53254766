/** An error that leaves the service as a Matrix-style JSON body `{errcode, error}`. */
export class MatrixError extends Error {
  readonly status: number;
  readonly errcode: string;
  readonly headers: Readonly<Record<string, string>>;
  /** Further fields of the body, e.g. retry_after_ms. */
  readonly extra: Readonly<Record<string, string | number>>;

  constructor(
    status: number,
    errcode: string,
    message: string,
    headers: Record<string, string> = {},
    extra: Record<string, string | number> = {},
  ) {
    // An expected answer, not a bug: capturing a stack trace cost ~7% of a forged request's CPU.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = limit;
    this.name = 'MatrixError';
    this.status = status;
    this.errcode = errcode;
    this.headers = headers;
    this.extra = extra;
  }

  toJSON(): Record<string, string | number> {
    return { ...this.extra, errcode: this.errcode, error: this.message };
  }
}

/** A failure of the homeserver (or of reaching it), as opposed to a refusal of the request: logged, never summarized. */
export class HomeserverError extends MatrixError {}

function retryAfter(retryAfterMs: number): { headers: Record<string, string>; extra: Record<string, number> } {
  const ms = Math.max(1000, Math.ceil(retryAfterMs));
  return { headers: { 'Retry-After': String(Math.ceil(ms / 1000)) }, extra: { retry_after_ms: ms } };
}

/** 429 or 503 with Retry-After (whole seconds) and the spec's retry_after_ms. */
export function retryLater(status: 429 | 503, errcode: string, message: string, retryAfterMs: number): MatrixError {
  const { headers, extra } = retryAfter(retryAfterMs);
  return new MatrixError(status, errcode, message, headers, extra);
}

/**
 * A registration held back for its network's sake: an account ceiling reached (429), or the homeserver's queue shared
 * out among networks (503). Summaries count it under `network` (or `service`), not the client.
 */
export class HeldBackError extends MatrixError {
  readonly network: string;
  constructor(status: 429 | 503, errcode: string, message: string, network: string, retryAfterMs: number) {
    const { headers, extra } = retryAfter(retryAfterMs);
    super(status, errcode, message, headers, extra);
    this.network = network;
  }
}

/** The registry database cannot be reached (PostgreSQL down or restarting): logged, never summarized. */
export class StoreUnavailableError extends MatrixError {}

/** The database failed in a way a retry may cure: 503 with Retry-After. */
export function storeRetryLater(message: string, retryAfterMs: number): StoreUnavailableError {
  const { headers, extra } = retryAfter(retryAfterMs);
  return new StoreUnavailableError(503, 'M_UNKNOWN', message, headers, extra);
}

/** The homeserver failed in a way a retry may cure: 503 with Retry-After. */
export function homeserverRetryLater(errcode: string, message: string, retryAfterMs: number): HomeserverError {
  const { headers, extra } = retryAfter(retryAfterMs);
  return new HomeserverError(503, errcode, message, headers, extra);
}

export const invalidParam = (message: string): MatrixError => new MatrixError(400, 'M_INVALID_PARAM', message);
export const missingParam = (message: string): MatrixError => new MatrixError(400, 'M_MISSING_PARAM', message);
export const badJson = (message: string): MatrixError => new MatrixError(400, 'M_BAD_JSON', message);
export const forbidden = (message: string): MatrixError => new MatrixError(403, 'M_FORBIDDEN', message);
export const userInUse = (message: string): MatrixError => new MatrixError(409, 'M_USER_IN_USE', message);
