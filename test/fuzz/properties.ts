import type { RegistrationBody } from '../../src/protocol/signRegistration.js';
import type { AppserviceCase, FramingCase, HomeserverCase, RegisterCase } from './arbitraries.js';
import { HEALTHY, misbehaves } from './fakeHomeserver.js';
import type { FuzzedGate } from './fuzzedGate.js';
import { exchange, rawRequest, type RawAnswer } from './rawHttp.js';

/**
 * The properties against the built service: each sends its case, checks the answers the case can be sure of, then
 * the invariants every case must leave true (FuzzedGate.checkInvariants). Each throws, saying what broke.
 */

const EXCHANGE_TIMEOUT_MS = 8000;

/** A 5xx is the service's own fault, but 502, 503 and 504 when the homeserver (or the store) failed it. */
function checkAnswer(answer: RawAnswer, homeserverFailed: boolean, what: string): void {
  const dependency = answer.status === 502 || answer.status === 503 || answer.status === 504;
  if (answer.status >= 500 && !(dependency && homeserverFailed)) throw new Error(`${what}: ${answer.status} ${answer.body.slice(0, 300)}`);
  if (answer.status >= 300 && answer.body !== '') {
    let parsed: { errcode?: unknown; error?: unknown } = {};
    try {
      parsed = JSON.parse(answer.body) as typeof parsed;
    } catch {
      // reported below
    }
    if (typeof parsed.errcode !== 'string' || !parsed.errcode.startsWith('M_') || typeof parsed.error !== 'string')
      throw new Error(`${what}: ${answer.status} without a Matrix error: ${answer.body.slice(0, 300)}`);
  }
}

const nodeBody = (node: RegistrationBody): string =>
  JSON.stringify({ localpart: node.localpart, password: node.password, displayname: node.displayname });

export async function registerProperty(gate: FuzzedGate, input: RegisterCase): Promise<void> {
  const node = gate.freshNode();
  const body = gate.fill(input.body, node);
  const headers = input.headers.map(([name, value]) => [name, gate.fill(value, node)] as const);
  const sent = rawRequest('POST', gate.fill(input.path, node), headers, body);
  const { answers } = await exchange(gate.port, { pieces: [sent], expect: 1, timeoutMs: EXCHANGE_TIMEOUT_MS });
  const answer = answers[0];
  if (answer === undefined) throw new Error('no answer to a /register request');
  checkAnswer(answer, false, 'POST /register');
  // Bad headers lose nothing: a node's own body is registered whatever came with it.
  if (body === nodeBody(node) && answer.status !== 200) throw new Error(`a node's valid registration got ${answer.status} ${answer.body}`);
  await gate.checkInvariants();
}

/** Each kind of framed request, and the answer it must get. */
function framed(gate: FuzzedGate, kind: string, index: number): { bytes: string; status: number } {
  const auth = [['Authorization', `Bearer ${gate.hsToken}`]] as const;
  const json = [['Content-Type', 'application/json']] as const;
  switch (kind) {
    case 'valid':
      return { bytes: rawRequest('POST', '/regapp/1/register', json, nodeBody(gate.freshNode())), status: 200 };
    case 'forged': {
      const node = gate.freshNode();
      return {
        bytes: rawRequest('POST', '/regapp/1/register', json, nodeBody({ ...node, password: gate.freshNode().password })),
        status: 403,
      };
    }
    case 'wrong-method':
      return { bytes: rawRequest('GET', '/regapp/1/register', [], undefined), status: 405 };
    case 'ping':
      return { bytes: rawRequest('POST', '/regapp/1/_matrix/app/v1/ping', [...auth, ...json], '{"transaction_id":"fuzz"}'), status: 200 };
    case 'deep-transaction':
      return {
        bytes: rawRequest(
          'PUT',
          `/regapp/1/_matrix/app/v1/transactions/fuzz-${Date.now()}-${index}`,
          [...auth, ...json],
          `{"events":[{"content":${'['.repeat(6000)}${']'.repeat(6000)}}]}`,
        ),
        status: 200,
      };
    case 'unknown-path':
      return { bytes: rawRequest('GET', '/regapp/1/nothing/here', [], undefined), status: 404 };
    default:
      return { bytes: rawRequest('GET', '/regapp/1/_matrix/app/v1/users/%40nobody%3Aphoton.test', auth, undefined), status: 404 };
  }
}

export async function framingProperty(gate: FuzzedGate, input: FramingCase): Promise<void> {
  const requests = input.requests.map((kind, index) => framed(gate, kind, index));
  const all = requests.map((request) => request.bytes).join('') + input.garbage;
  const cuts = [...new Set(input.cuts.map((share) => Math.floor(share * all.length)))].sort((a, b) => a - b);
  const pieces = [0, ...cuts, all.length]
    .slice(1)
    .map((end, index, ends) => all.slice(index === 0 ? 0 : ends[index - 1], end))
    .filter((piece) => piece !== '');
  const result = await exchange(gate.port, {
    pieces,
    pauseMs: input.pauseMs,
    halfClose: input.halfClose,
    expect: requests.length + (input.garbage === '' ? 0 : 1),
    timeoutMs: EXCHANGE_TIMEOUT_MS,
  });
  // Every pipelined request is answered, in order, whether the client half-closed or not.
  if (result.answers.length < requests.length)
    throw new Error(
      `${requests.length} requests (${input.requests.join(', ')}), ${result.answers.length} answers: ${result.answers.map((a) => a.status).join(', ')}`,
    );
  requests.forEach((request, index) => {
    const answer = result.answers[index] as RawAnswer;
    checkAnswer(answer, false, input.requests[index] as string);
    if (answer.status !== request.status)
      throw new Error(`${input.requests[index]}: ${answer.status}, expected ${request.status}: ${answer.body.slice(0, 200)}`);
  });
  for (const extra of result.answers.slice(requests.length)) checkAnswer(extra, false, 'what followed the requests');
  await gate.checkInvariants();
}

/** Whether a path is the transactions route with a segment that decodes: such a PUT with the token is always 200. */
function isTransaction(path: string): boolean {
  const match = /^\/regapp\/1(?:\/_matrix\/app\/v1)?\/transactions\/([^/?]+)\/?(?:\?|$)/i.exec(path);
  if (match === null) return false;
  try {
    decodeURIComponent(match[1] as string);
    return true;
  } catch {
    return false;
  }
}

export async function appserviceProperty(gate: FuzzedGate, input: AppserviceCase): Promise<void> {
  const node = gate.freshNode();
  let path = gate.fill(input.path, node);
  if (input.auth === 'query') path += `${path.includes('?') ? '&' : '?'}access_token=${gate.hsToken}`;
  const headers: (readonly [string, string])[] = [['Content-Type', 'application/json']];
  if (input.auth === 'header') headers.push(['Authorization', `Bearer ${gate.hsToken}`]);
  if (input.auth === 'wrong') headers.push(['Authorization', `Bearer ${gate.hsToken}x`]);
  // A case kept in regressions.json says null where fast-check made undefined.
  const body = input.body === undefined || input.body === null ? undefined : gate.fill(input.body, node);
  const { answers } = await exchange(gate.port, {
    pieces: [rawRequest(input.method, path, headers, body)],
    expect: 1,
    timeoutMs: EXCHANGE_TIMEOUT_MS,
    heads: [input.method === 'HEAD'],
  });
  const answer = answers[0];
  if (answer === undefined) throw new Error(`no answer to ${input.method} ${path.slice(0, 200)}`);
  checkAnswer(answer, false, `${input.method} ${path.slice(0, 200)}`);
  // Whatever a transaction holds, it is acknowledged: Synapse would otherwise send it again for ever.
  let json: unknown = {};
  try {
    json = body === undefined ? {} : JSON.parse(body);
  } catch {
    json = undefined;
  }
  if (
    input.method === 'PUT' &&
    input.auth === 'header' &&
    isTransaction(path) &&
    typeof json === 'object' &&
    json !== null &&
    answer.status !== 200
  )
    throw new Error(`a transaction with the token got ${answer.status} ${answer.body.slice(0, 300)}`);
  await gate.checkInvariants();
}

export async function homeserverProperty(gate: FuzzedGate, input: HomeserverCase): Promise<void> {
  const node = gate.freshNode();
  const plan = gate.fillValue(input.plan, node) as HomeserverCase['plan'];
  gate.homeserver.plan = plan;
  const first = await gate.register(node);
  checkAnswer({ status: first.status, headers: {}, body: first.body }, misbehaves(plan), 'a registration');
  if (!misbehaves(plan) && first.status !== 200)
    throw new Error(`with a healthy homeserver a registration got ${first.status} ${first.body}`);
  // /ready says so while the homeserver cannot be reached.
  if (!plan.up) {
    let ready = 200;
    for (let wait = 0; wait < 50 && ready === 200; wait++) {
      ready = await gate.probe('/ready');
      if (ready === 200) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    if (ready === 200) throw new Error('/ready answered 200 while the homeserver could not be reached');
  }
  gate.homeserver.plan = HEALTHY;
  if (input.retry) {
    // The node's account is its own whatever happened: its retry gets 200 unless its 200 already reached it.
    let retry = await gate.register(node);
    // A lease of the first attempt may still be held for a moment (a call cut while the homeserver worked on).
    for (let wait = 0; wait < 60 && retry.status === 503; wait++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      retry = await gate.register(node);
    }
    // After a 200, a 409; or the same 200 again, when the retry overtook the report that the first reached the node.
    const expected = first.status === 200 ? [409, 200] : [200];
    if (!expected.includes(retry.status))
      throw new Error(
        `after ${first.status} (${first.body.slice(0, 200)}), the node's retry got ${retry.status} ${retry.body.slice(0, 300)}`,
      );
  }
  await gate.checkInvariants();
}
