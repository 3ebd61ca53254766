import fc from 'fast-check';
import type { HomeserverPlan, PlannedAnswer } from './fakeHomeserver.js';

/**
 * What the fuzzer sends, as fast-check arbitraries. Every value is plain JSON, so that a case that failed can be kept
 * in regressions.json and replayed as it was. Strings that stand for something the harness knows only at run time (a
 * fresh signed node, a configured secret, the hs_token) are placeholders the harness fills in (fill.ts).
 */

/** Placeholders: a fresh validly signed node's fields, a node already registered, and each configured secret. */
export const PLACEHOLDERS = {
  localpart: '{{localpart}}',
  password: '{{password}}',
  displayname: '{{displayname}}',
  knownNode: '{{known-node}}',
  hsToken: '{{hs_token}}',
  asToken: '{{as_token}}',
  sharedSecret: '{{shared_secret}}',
} as const;

const SECRETS = [PLACEHOLDERS.hsToken, PLACEHOLDERS.asToken, PLACEHOLDERS.sharedSecret];

/** Printable ASCII without the characters HTTP forbids in a header value. */
const headerText = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((code) => String.fromCharCode(code)), maxLength: 80 });
const tokenChars = 'abcdefghijklmnopqrstuvwxyz0123456789-_';
const headerName = fc.string({ unit: fc.constantFrom(...tokenChars.split('')), minLength: 1, maxLength: 20 }).map((name) => `x-${name}`);

const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((parts) => parts.join('.'));
const ipv6 = fc.ipV6();

/** X-Forwarded-For as proxies, clients and attackers write it (zone ids, ports, brackets, lists, garbage). */
export const forwardedFor: fc.Arbitrary<string> = fc.oneof(
  ipv4,
  ipv6,
  fc.tuple(ipv6, fc.constantFrom('eth0', '1', 'lo', '%', '')).map(([address, zone]) => `${address}%${zone}`),
  fc.constantFrom('fe80::1%eth0', '[::1]', '[2001:db8::1]:8080', '203.0.113.7:4711', 'unknown', '_hidden', '::ffff:10.0.0.1'),
  fc.array(fc.oneof(ipv4, ipv6, headerText), { minLength: 2, maxLength: 6 }).map((list) => list.join(', ')),
  fc.constantFrom('', ' ', ',', ',,', '1.2.3.4,', ', 1.2.3.4', '1.2.3.4 5.6.7.8', '999.1.1.1', '0x7f.1', '::', '0.0.0.0'),
  fc.constantFrom(...SECRETS),
  headerText,
  fc.nat({ max: 4000 }).map((length) => '1.'.repeat(length) + '1'),
);

const hexString = (length: number): fc.Arbitrary<string> =>
  fc.string({ unit: fc.constantFrom(...'0123456789abcdef'.split('')), minLength: length, maxLength: length });

/** A field of a registration body: the real value, near misses, other types, secrets. */
const fieldValue = (real: string): fc.Arbitrary<unknown> =>
  fc.oneof(
    { weight: 4, arbitrary: fc.constant(real) },
    fc.constantFrom(...SECRETS),
    fc.constant(PLACEHOLDERS.knownNode),
    hexString(40).map((hex) => `0x${hex}`),
    hexString(130),
    hexString(128).map((hex) => `${hex}1d`),
    fc.string({ maxLength: 200 }),
    fc.string({ unit: 'binary', maxLength: 50 }),
    fc.constantFrom(null, true, 0, -1, 1e308, [], {}, ['0x'], { $gt: '' }),
    fc.nat({ max: 20_000 }).map((length) => 'f'.repeat(length)),
  );

/** A /register body: as a node sends it, altered field by field, or not an object at all. */
export const registerBody: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.constant(JSON.stringify({ localpart: '{{localpart}}', password: '{{password}}', displayname: '{{displayname}}' })),
  },
  {
    weight: 6,
    arbitrary: fc
      .record(
        {
          localpart: fieldValue(PLACEHOLDERS.localpart),
          password: fieldValue(PLACEHOLDERS.password),
          displayname: fieldValue(PLACEHOLDERS.displayname),
          extra: fc.jsonValue({ maxDepth: 3 }),
        },
        { requiredKeys: [] },
      )
      .map((body) => JSON.stringify(body)),
  },
  fc.jsonValue({ maxDepth: 4 }).map((value) => JSON.stringify(value)),
  fc.string({ maxLength: 300 }),
  fc.nat({ max: 3000 }).map((depth) => '['.repeat(depth) + ']'.repeat(depth)),
  fc.constantFrom(
    '',
    '{',
    'null',
    '{"localpart":"{{localpart}}","localpart":"0x00","password":"{{password}}","displayname":"{{displayname}}"}',
    '\ufeff{"localpart":"{{localpart}}","password":"{{password}}","displayname":"{{displayname}}"}',
    '{"__proto__":{"localpart":"{{localpart}}"}}',
  ),
);

const CONTENT_TYPES = ['application/json', 'text/plain', 'application/json; charset=utf-16', 'application/x-www-form-urlencoded', ''];

export interface RegisterCase {
  readonly path: string;
  readonly headers: readonly (readonly [string, string])[];
  readonly body: string;
}

export const registerCase: fc.Arbitrary<RegisterCase> = fc.record({
  path: fc.constantFrom(
    '/regapp/1/register',
    '/regapp/1/register?x=1',
    '/regapp/1/register/',
    '/regapp/1/register?access_token={{hs_token}}',
  ),
  headers: fc
    .tuple(
      fc.option(
        fc.constantFrom(...CONTENT_TYPES).map((type) => ['Content-Type', type] as const),
        { nil: undefined },
      ),
      fc.array(
        forwardedFor.map((value) => ['X-Forwarded-For', value] as const),
        { maxLength: 3 },
      ),
      fc.array(fc.tuple(headerName, fc.oneof(headerText, fc.constantFrom(...SECRETS))), { maxLength: 3 }),
      fc.option(
        fc.constantFrom(
          ['Connection', 'close'] as const,
          ['Expect', '100-continue'] as const,
          ['Authorization', 'Bearer {{hs_token}}'] as const,
        ),
        {
          nil: undefined,
        },
      ),
    )
    .map(([type, forwarded, extra, other]) => [
      ...(type === undefined ? [] : [type]),
      ...forwarded,
      ...extra,
      ...(other === undefined ? [] : [other]),
    ]),
  body: registerBody,
});

/** One request of a pipelined or split exchange, by what it is. */
export const framedRequest = fc.constantFrom('valid', 'forged', 'wrong-method', 'ping', 'deep-transaction', 'unknown-path', 'user-query');

export interface FramingCase {
  readonly requests: readonly string[];
  /** Where the bytes are cut into pieces written apart (shares of the whole). */
  readonly cuts: readonly number[];
  readonly pauseMs: number;
  readonly halfClose: boolean;
  /** Bytes after the last request: not HTTP. */
  readonly garbage: string;
}

export const framingCase: fc.Arbitrary<FramingCase> = fc.record({
  requests: fc.array(framedRequest, { minLength: 1, maxLength: 5 }),
  cuts: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 4 }),
  pauseMs: fc.constantFrom(0, 0, 1, 5, 20),
  halfClose: fc.boolean(),
  garbage: fc.oneof(
    { weight: 4, arbitrary: fc.constant('') },
    fc.string({ minLength: 1, maxLength: 40 }),
    fc.constant('GET / HTTP/1.1\r\n\r\n'),
  ),
});

/** An application-service request with the homeserver's token (or without it, or with another). */
export interface AppserviceCase {
  readonly method: string;
  readonly path: string;
  readonly auth: 'header' | 'query' | 'none' | 'wrong';
  readonly body: string | undefined;
}

const pathSegment = fc.oneof(
  fc.constantFrom(
    '@someone:photon.test',
    '@{{known-node}}:photon.test',
    '%40x%3Aphoton.test',
    '%ff%fe',
    '%',
    '..',
    '%2e%2e%2fregister',
    '{{hs_token}}',
    '{{as_token}}',
  ),
  fc.string({ minLength: 1, maxLength: 30 }).map((text) => encodeURIComponent(text)),
  fc.nat({ max: 3000 }).map((length) => 'a'.repeat(length + 1)),
);

/** An event as a homeserver (or anyone holding the token) may put in a transaction. */
const event = fc.record(
  {
    type: fc.oneof(fc.constantFrom('m.room.message', 'm.room.member', 'm.presence'), fc.string()),
    sender: fc.oneof(
      fc.constantFrom('@{{known-node}}:photon.test', '@someone:photon.test', '{{shared_secret}}'),
      fc.string(),
      fc.jsonValue(),
    ),
    origin_server_ts: fc.oneof(
      fc.integer(),
      fc.double(),
      fc.constantFrom(8.64e15, 8.64e15 + 1, -8.64e15 - 1, Number.MAX_SAFE_INTEGER, 1e300),
      fc.string(),
      fc.jsonValue(),
    ),
    content: fc.jsonValue({ maxDepth: 3 }),
  },
  { requiredKeys: [] },
);

export const appserviceCase: fc.Arbitrary<AppserviceCase> = fc.record({
  method: fc.constantFrom('GET', 'PUT', 'POST', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH'),
  path: fc
    .tuple(
      fc.constantFrom('/regapp/1/_matrix/app/v1', '/regapp/1', '/regapp/1/_matrix/app/v1/', '/regapp/1/_MATRIX/app/v1'),
      fc.constantFrom(
        '/transactions/',
        '/users/',
        '/rooms/',
        '/ping',
        '/thirdparty/protocol/',
        '/thirdparty/user/',
        '/thirdparty/location',
        '/_regservice/forget',
        '/',
      ),
      pathSegment,
      fc.constantFrom('', '?x=1', '?access_token=', '?access_token[]=a', '?__proto__[x]=1'),
    )
    .map(([prefix, route, segment, query]) => `${prefix}${route}${route.endsWith('/') ? segment : ''}${query}`),
  auth: fc.constantFrom('header', 'header', 'query', 'none', 'wrong'),
  body: fc.option(
    fc.oneof(
      fc.array(event, { maxLength: 5 }).map((events) => JSON.stringify({ events, 'de.sorunome.msc2409.ephemeral': events })),
      fc.jsonValue({ maxDepth: 4 }).map((value) => JSON.stringify(value)),
      fc.nat({ max: 8000 }).map((depth) => `{"events":[{"content":${'['.repeat(depth)}${']'.repeat(depth)}}]}`),
      fc.string({ maxLength: 100 }),
      fc.constantFrom('{"transaction_id":"{{hs_token}}"}', '{"all":true}', '{"localparts":["{{known-node}}"]}'),
    ),
    { nil: undefined },
  ),
});

const plannedAnswer = (statuses: readonly number[]): fc.Arbitrary<PlannedAnswer> =>
  fc.oneof(
    { weight: 3, arbitrary: fc.constant<PlannedAnswer>({ kind: 'ok', status: 200, delayMs: 0, cut: false, hang: false }) },
    fc.record({
      kind: fc.constantFrom('ok', 'json', 'json', 'text', 'empty', 'array', 'huge'),
      status: fc.constantFrom(...statuses),
      json: fc.oneof(
        fc.record({
          errcode: fc.constantFrom(
            'M_USER_IN_USE',
            'M_EXCLUSIVE',
            'M_LIMIT_EXCEEDED',
            'M_FORBIDDEN',
            'M_UNKNOWN_TOKEN',
            'M_INVALID_USERNAME',
            'M_UNKNOWN',
          ),
          error: fc.oneof(
            fc.constantFrom('unrecognised nonce', 'Application service has not registered this user', '{{shared_secret}}', '{{as_token}}'),
            fc.string(),
          ),
          retry_after_ms: fc.oneof(fc.nat(), fc.constant(-1), fc.constant(1e12)),
        }),
        fc.jsonValue({ maxDepth: 3 }),
      ),
      text: fc.oneof(fc.constant('{{shared_secret}}'), fc.string({ maxLength: 100 })),
      delayMs: fc.constantFrom(0, 0, 5, 50),
      cut: fc.boolean(),
      hang: fc.oneof({ weight: 12, arbitrary: fc.constant(false) }, fc.constant(true)),
    }),
  );

export interface HomeserverCase {
  readonly plan: HomeserverPlan;
  /** The node tries again once the homeserver is healthy: its account is then its own, whatever happened before. */
  readonly retry: boolean;
}

export const homeserverCase: fc.Arbitrary<HomeserverCase> = fc.record({
  plan: fc.record({
    nonce: plannedAnswer([200, 400, 403, 404, 429, 500, 502, 503]),
    register: plannedAnswer([200, 400, 401, 403, 409, 429, 500, 502, 503]),
    whoami: plannedAnswer([200, 401, 403, 404, 500]),
    up: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, fc.constant(false)),
  }),
  retry: fc.boolean(),
});

/** A call as a compromised worker could send it over IPC: any method, any arguments. */
export interface IpcCase {
  readonly method: string;
  readonly args: readonly unknown[];
}

export const ipcCase: fc.Arbitrary<IpcCase> = fc.record({
  method: fc.constantFrom(
    'limitClient',
    'register',
    'delivered',
    'transaction',
    'queryUser',
    'forget',
    'reportRefusals',
    'reportLoad',
    'log',
    'toString',
    '__proto__',
    'nothing',
  ),
  args: fc.array(
    fc.oneof(
      fc.jsonValue({ maxDepth: 4 }),
      fc.constantFrom('{{localpart}}', '{{known-node}}', 'all', '{{hs_token}}'),
      fc.record({
        localpart: fc.oneof(fc.constant('{{localpart}}'), fc.jsonValue()),
        password: fc.jsonValue(),
        displayname: fc.jsonValue(),
      }),
      fc.record({ client: fc.jsonValue(), address: fc.jsonValue(), elapsedMs: fc.jsonValue(), worker: fc.jsonValue() }),
      fc.record({
        outcomes: fc.jsonValue(),
        topClients: fc.jsonValue(),
        unnamedClients: fc.jsonValue(),
        untrustedForwarders: fc.jsonValue(),
      }),
      fc.array(fc.oneof(fc.string(), fc.constant('{{shared_secret}}\nforged line')), { maxLength: 3 }),
    ),
    { maxLength: 3 },
  ),
});
