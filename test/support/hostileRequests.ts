import { signRegistration } from '../../src/protocol/signRegistration.js';

/** One request as raw as HTTP allows: the path is sent as written, never normalised. */
export interface RawRequest {
  readonly kind: string;
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body?: Buffer | string;
}

/** A small seeded PRNG (mulberry32), so a failing case can be generated again. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const UNICODE = ['é', 'ß', 'Ω', '中', '😀', '\u200b', '\u202e', '\u0000', '\ud800', 'ｘ', '０', 'İ', '\uffff'];
const CONTENT_TYPES = [
  'application/json',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/json; charset=utf-16',
  'application/octet-stream',
  'image/png',
  '',
];
const AS_PATHS = [
  '/regapp/1/transactions/../register',
  '/regapp/1/transactions/%2e%2e%2fregister',
  '/regapp/1/_matrix/app/v1/users/%00',
  '/regapp/1/_matrix/app/v1/users/%40%00%3Ahs',
  '/regapp/1/_matrix/app/v1/users/%252e%252e',
  '/regapp/1//_matrix/app/v1/transactions/1',
  '/regapp/1/_matrix/app/v1/transactions/1?access_token[]=a&access_token=b',
  '/regapp/1/_matrix/app/v1/transactions/1?access_token=',
  '/regapp/1/_matrix/app/v1/transactions/%ff%fe',
  '/regapp/1/_matrix/app/v1/rooms/%23..%2F..%2Fetc%2Fpasswd',
  '/regapp/1/_matrix/app/v1/thirdparty/user/../../register',
  '/regapp/1/ping?__proto__[x]=1',
  '/regapp/1/users/@x:y?constructor=1',
  '/regapp/1/register/../../_matrix/app/v1/ping',
  '/regapp/1/register?localpart=0x00',
  '/regapp/1/%72egister',
  '/regapp/1/REGISTER',
  '/regapp/2/register',
  '/regapp/1/' + 'a/'.repeat(2000),
  '/regapp/1/register#fragment',
];

/** Replaces lone surrogates, which no URI encoding accepts. */
const wellFormed = (text: string): string => text.replace(/[\ud800-\udfff]/g, '?');

/** At least `count` requests no correct node would send. Every one must get a 4xx Matrix error. */
export function hostileRequests(count: number, serverName: string, seed = 20261122): RawRequest[] {
  const random = seededRandom(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const int = (max: number): number => Math.floor(random() * max);
  const seededKey = (): Uint8Array => Uint8Array.from({ length: 32 }, (_unused, index) => (index === 0 ? 1 + int(200) : int(256)));
  const valid = Array.from({ length: 8 }, () => signRegistration(seededKey(), serverName));
  const hex = (length: number): string => Array.from({ length }, () => '0123456789abcdef'[int(16)]).join('');
  const randomText = (length: number): string =>
    Array.from({ length }, () => (random() < 0.2 ? pick(UNICODE) : String.fromCharCode(32 + int(95)))).join('');
  const json = (body: unknown, contentType = 'application/json'): Omit<RawRequest, 'kind'> => ({
    method: 'POST',
    path: '/regapp/1/register',
    headers: contentType === '' ? {} : { 'content-type': contentType },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const wrongValue = (): unknown => pick([42, -1, 1e308, true, null, [], {}, ['0x'], { $gt: '' }, '', ' '.repeat(10)]);

  const generators: Record<string, () => Omit<RawRequest, 'kind'>> = {
    'random bytes': () => ({
      ...json(Buffer.from(Array.from({ length: int(600) }, () => int(256)))),
      body: Buffer.from(Array.from({ length: int(600) }, () => int(256))),
    }),
    'random text': () => json(randomText(int(400))),
    'truncated JSON': () => {
      const text = JSON.stringify(pick(valid));
      return json(text.slice(0, int(text.length - 1)));
    },
    'wrong types': () => {
      const body: Record<string, unknown> = { ...pick(valid) };
      body[pick(['localpart', 'displayname', 'password'])] = wrongValue();
      return json(body);
    },
    'huge strings': () =>
      json({ ...pick(valid), [pick(['localpart', 'displayname', 'password', 'extra'])]: 'f'.repeat(5000 + int(20_000)) }),
    unicode: () => {
      const body: Record<string, string> = { ...pick(valid) };
      const field = pick(['localpart', 'displayname', 'password'] as const);
      const value = body[field] ?? '';
      const at = int(value.length);
      body[field] = value.slice(0, at) + pick(UNICODE) + value.slice(at + 1);
      return json(body);
    },
    'prototype keys': () => {
      const node = pick(valid);
      const key = pick(['__proto__', 'constructor', 'prototype']);
      return json(`{"${key}": ${JSON.stringify(node)}, "${pick(['localpart', 'password'])}": {"${key}": {"polluted": true}}}`);
    },
    'deep nesting': () => {
      const depth = 50 + int(1500);
      return json(random() < 0.5 ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth));
    },
    'wrong content type': () => {
      const node = pick(valid);
      const type = pick(CONTENT_TYPES);
      const body = type.startsWith('application/x-www')
        ? new URLSearchParams({ ...node, localpart: node.localpart.slice(0, 10) }).toString()
        : JSON.stringify({ ...node, password: node.password.slice(2) });
      return json(body, type);
    },
    'forged signature': () => {
      const node = pick(valid);
      const v = pick(['1b', '1c', '00', '01', '1d']);
      return json({
        ...node,
        [pick(['password', 'displayname'])]:
          pick(['password', 'displayname']) === 'password' ? hex(128) + v : `${node.localpart.slice(2, 6)}-${hex(128)}${v}`,
      });
    },
    'mismatched fields': () => {
      const [a, b] = [pick(valid), pick(valid)];
      const flipped = (text: string): string => text.slice(0, 10) + (text[10] === '0' ? '1' : '0') + text.slice(11);
      return json({ localpart: a.localpart, displayname: b.displayname, password: a === b ? flipped(b.password) : b.password });
    },
    'not a POST': () => ({
      method: pick(['GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']),
      path: '/regapp/1/register',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(pick(valid)),
    }),
    'application-service tricks': () => {
      const token = pick([undefined, '', 'x'.repeat(int(3000)), 'Bearer', `${randomText(10)}`, '../../etc/passwd']);
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (token !== undefined)
        headers.authorization = random() < 0.5 ? `Bearer ${encodeURIComponent(wellFormed(token))}` : encodeURIComponent(wellFormed(token));
      return {
        method: pick(['GET', 'PUT', 'POST', 'DELETE']),
        path: pick(AS_PATHS),
        headers,
        body: random() < 0.5 ? JSON.stringify({ events: [{ sender: '@x:y' }] }) : randomText(int(100)),
      };
    },
  };
  const kinds = Object.keys(generators);
  return Array.from({ length: count }, (_unused, index) => {
    const kind = kinds[index % kinds.length] as string;
    const generated = (generators[kind] as () => Omit<RawRequest, 'kind'>)();
    // Framed correctly whatever the method, so each request reaches the service as one request.
    const length = generated.body === undefined ? 0 : Buffer.byteLength(generated.body);
    return { kind, ...generated, headers: { ...generated.headers, 'content-length': String(length) } };
  });
}
