import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { urlToHttpOptions } from 'node:url';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { LRUCache } from 'lru-cache';
import { HomeserverError, homeserverRetryLater } from '../protocol/matrixError.js';
import { createdNothing } from './createdNothing.js';

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

export function homeserverFailed(reason: string): HomeserverError {
  return new HomeserverError(502, 'M_UNKNOWN', `homeserver failed: ${reason}`);
}

function describeFailure(error: unknown): string {
  const { code, message, cause } = error as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  return cause?.code ?? code ?? cause?.message ?? message ?? String(error);
}

/** Connection failures before a request can have been sent. */
const NOT_CONNECTED = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);

/** Homeserver answers are small JSON objects; a larger one is refused rather than held in memory. */
const MAX_ANSWER_BYTES = 1024 * 1024;

class CallTimeout extends Error {}
class AnswerTooLarge extends Error {}

// Node's own HTTP client with kept-alive connections: fetch() cost a third of the primary's CPU per registration
// and, like undici, parses HTTP in WebAssembly whose memory the primary then keeps.
const AGENTS = { 'http:': new HttpAgent({ keepAlive: true }), 'https:': new HttpsAgent({ keepAlive: true }) } as const;

interface Target {
  readonly secure: boolean;
  readonly options: RequestOptions;
}

/**
 * URLs parsed once: the registration endpoint is called twice per registration, and parsing cost as much as sending.
 * Bounded, as the admin API's URLs are per user.
 */
const targets = new LRUCache<string, Target>({ max: 64 });

function targetOf(url: string): Target {
  let target = targets.get(url);
  if (target === undefined) {
    const parsed = new URL(url);
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error(`unsupported protocol ${parsed.protocol}`);
    target = { secure: parsed.protocol === 'https:', options: urlToHttpOptions(parsed) };
    targets.set(url, target);
  }
  return target;
}

/** Sends one request; redirects are not followed. Rejects with CallTimeout once `timeoutMs` passed, the socket closed. */
function send(call: HomeserverCall, headers: Record<string, string>): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    let target: Target;
    try {
      target = targetOf(call.url);
    } catch (error) {
      reject(error instanceof Error ? error : new Error(String(error)));
      return;
    }
    const body = call.body === undefined ? undefined : JSON.stringify(call.body);
    const options: RequestOptions = {
      ...target.options,
      method: call.method,
      headers: body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) },
      agent: target.secure ? AGENTS['https:'] : AGENTS['http:'],
    };
    const onAnswer = (res: IncomingMessage): void => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_ANSWER_BYTES) req.destroy(new AnswerTooLarge(`it answered with more than ${MAX_ANSWER_BYTES} bytes`));
        else chunks.push(chunk);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    };
    const req = target.secure ? httpsRequest(options, onAnswer) : httpRequest(options, onAnswer);
    const timer = setTimeout(() => req.destroy(new CallTimeout()), call.timeoutMs);
    req.on('error', reject);
    req.on('close', () => clearTimeout(timer));
    req.end(body);
  });
}

/**
 * One request to the homeserver. Unreachable becomes a 503 with Retry-After; 5xx (unless accepted) and
 * non-JSON answers a 502; a timeout a 504; each saying the homeserver failed; anything else is returned for the caller to map.
 */
export async function callHomeserver(call: HomeserverCall): Promise<HomeserverAnswer> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (call.body !== undefined) headers['content-type'] = 'application/json';
  if (call.accessToken !== undefined) headers.authorization = `Bearer ${call.accessToken}`;

  let status: number;
  let text: string;
  try {
    ({ status, text } = await send(call, headers));
  } catch (error) {
    if (error instanceof CallTimeout) {
      throw new HomeserverError(504, 'M_UNKNOWN', `homeserver failed: no answer within ${call.timeoutMs / 1000} s`);
    }
    if (error instanceof AnswerTooLarge) throw homeserverFailed(error.message);
    const unreachable = homeserverRetryLater(
      'M_UNKNOWN',
      `homeserver failed: unreachable (${describeFailure(error)}); retry later`,
      UNREACHABLE_RETRY_MS,
    );
    // No connection was made: the request never reached the homeserver. A connection lost later may have delivered it.
    throw NOT_CONNECTED.has(describeFailure(error)) ? createdNothing(unreachable) : unreachable;
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (status >= 500 && !(call.acceptServerErrors === true && body !== undefined)) {
    throw homeserverFailed(`it answered HTTP ${status}`);
  }
  if (body === undefined) {
    throw homeserverFailed(`it answered HTTP ${status} with a body that is not JSON`);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw homeserverFailed(`it answered HTTP ${status} with JSON that is not an object`);
  }
  return { status, body: body as Record<string, unknown> };
}

export function errcodeOf(answer: HomeserverAnswer): string {
  return typeof answer.body.errcode === 'string' ? answer.body.errcode : '';
}

export function errorTextOf(answer: HomeserverAnswer): string {
  return typeof answer.body.error === 'string' ? answer.body.error : '';
}
