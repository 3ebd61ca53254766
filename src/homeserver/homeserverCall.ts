import { MatrixError, retryLater } from '../protocol/matrixError.js';

/** A JSON answer from the homeserver with a status below 500. */
export interface HomeserverAnswer {
  readonly status: number;
  readonly body: Readonly<Record<string, unknown>>;
}

export interface HomeserverCall {
  readonly method: 'GET' | 'POST' | 'PUT';
  readonly url: string;
  readonly body?: unknown;
  readonly accessToken?: string;
  readonly timeoutMs: number;
  /** Return 5xx answers that carry a JSON body instead of failing (the ping reports its errcode). */
  readonly acceptServerErrors?: boolean;
}

/** How long a client should wait before retrying when the homeserver cannot be reached. */
export const UNREACHABLE_RETRY_MS = 5000;

export function homeserverFailed(reason: string): MatrixError {
  return new MatrixError(502, 'M_UNKNOWN', `homeserver failed: ${reason}`);
}

function describeFetchFailure(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (error as Error).message;
}

/**
 * One request to the homeserver. Unreachable becomes a 503 with Retry-After; 5xx (unless accepted) and
 * non-JSON answers a 502; a timeout a 504; each saying the homeserver failed; anything else is returned for the caller to map.
 */
export async function callHomeserver(call: HomeserverCall): Promise<HomeserverAnswer> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (call.body !== undefined) headers['content-type'] = 'application/json';
  if (call.accessToken !== undefined) headers.authorization = `Bearer ${call.accessToken}`;

  let response: Response;
  let text: string;
  try {
    response = await fetch(call.url, {
      method: call.method,
      headers,
      body: call.body === undefined ? null : JSON.stringify(call.body),
      signal: AbortSignal.timeout(call.timeoutMs),
      redirect: 'error',
    });
    text = await response.text();
  } catch (error) {
    if ((error as Error).name === 'TimeoutError') {
      throw new MatrixError(504, 'M_UNKNOWN', `homeserver failed: no answer within ${call.timeoutMs / 1000} s`);
    }
    throw retryLater(503, 'M_UNKNOWN', `homeserver failed: unreachable (${describeFetchFailure(error)}); retry later`, UNREACHABLE_RETRY_MS);
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (response.status >= 500 && !(call.acceptServerErrors === true && body !== undefined)) {
    throw homeserverFailed(`it answered HTTP ${response.status}`);
  }
  if (body === undefined) {
    throw homeserverFailed(`it answered HTTP ${response.status} with a body that is not JSON`);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw homeserverFailed(`it answered HTTP ${response.status} with JSON that is not an object`);
  }
  return { status: response.status, body: body as Record<string, unknown> };
}

export function errcodeOf(answer: HomeserverAnswer): string {
  return typeof answer.body.errcode === 'string' ? answer.body.errcode : '';
}

export function errorTextOf(answer: HomeserverAnswer): string {
  return typeof answer.body.error === 'string' ? answer.body.error : '';
}
