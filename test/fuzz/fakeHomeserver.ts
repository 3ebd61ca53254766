import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** How the fake homeserver answers one kind of call in a case. */
export interface PlannedAnswer {
  /** 'ok': as Synapse would; the others answer `status` with that body. */
  readonly kind: 'ok' | 'json' | 'text' | 'empty' | 'array' | 'huge';
  readonly status: number;
  /** The JSON answered with kind 'json' (an errcode and error, say, which may carry a secret). */
  readonly json?: unknown;
  readonly text?: string;
  readonly delayMs: number;
  /** Sends half the answer, then drops the connection. */
  readonly cut: boolean;
  /** Never answers (the service's --homeserver-timeout ends the call). */
  readonly hang: boolean;
}

export interface HomeserverPlan {
  readonly nonce: PlannedAnswer;
  readonly register: PlannedAnswer;
  readonly whoami: PlannedAnswer;
  /** GET /_matrix/client/versions answers (the service's /ready asks it). */
  readonly up: boolean;
}

export const OK: PlannedAnswer = { kind: 'ok', status: 200, delayMs: 0, cut: false, hang: false };
export const HEALTHY: HomeserverPlan = { nonce: OK, register: OK, whoami: OK, up: true };

const isHealthy = (answer: PlannedAnswer): boolean => answer.kind === 'ok' && !answer.cut && !answer.hang;

/** Whether the plan has the homeserver misbehave anywhere: then a 502, 503 or 504 is the service's right answer. */
export function misbehaves(plan: HomeserverPlan): boolean {
  return !plan.up || !isHealthy(plan.nonce) || !isHealthy(plan.register) || !isHealthy(plan.whoami);
}

export interface FakeHomeserver {
  readonly url: string;
  plan: HomeserverPlan;
  /** Users it created. */
  readonly users: Set<string>;
  close(): Promise<void>;
}

const REGISTER = '/_synapse/admin/v1/register';

/**
 * A homeserver whose every answer the fuzzer chooses: shared-secret registration (nonce and register), whoami as an
 * application service, the versions /ready asks for and the application-service ping. What it answers as 'ok' is what
 * Synapse answers.
 */
export async function startFakeHomeserver(serverName: string): Promise<FakeHomeserver> {
  const users = new Set<string>();
  const sockets = new Set<Socket>();
  const held = new Set<ServerResponse>();
  const send = (res: ServerResponse, planned: PlannedAnswer, ok: () => unknown): void => {
    if (planned.hang) {
      held.add(res);
      return;
    }
    const status = planned.kind === 'ok' ? 200 : planned.status;
    const text =
      planned.kind === 'ok'
        ? JSON.stringify(ok())
        : planned.kind === 'json'
          ? JSON.stringify(planned.json ?? {})
          : planned.kind === 'text'
            ? (planned.text ?? '<html>Bad Gateway</html>')
            : planned.kind === 'array'
              ? '[1,2,3]'
              : planned.kind === 'huge'
                ? JSON.stringify({ errcode: 'M_UNKNOWN', error: 'x'.repeat(2 * 1024 * 1024) })
                : '';
    const respond = (): void => {
      if (planned.cut) {
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) + 10 });
        res.write(text.slice(0, Math.floor(text.length / 2)));
        setTimeout(() => res.socket?.destroy(), 5);
        return;
      }
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    if (planned.delayMs > 0) setTimeout(respond, planned.delayMs);
    else respond();
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://hs');
      const { plan } = fake;
      if (url.pathname === REGISTER && req.method === 'GET') {
        send(res, plan.nonce, () => ({ nonce: randomBytes(16).toString('hex') }));
      } else if (url.pathname === REGISTER && req.method === 'POST') {
        let username = '';
        try {
          username = String((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { username?: unknown }).username);
        } catch {
          // answered as planned
        }
        const userId = `@${username}:${serverName}`;
        send(res, plan.register, () => {
          users.add(userId);
          return { user_id: userId, home_server: serverName };
        });
      } else if (url.pathname === '/_matrix/client/v3/account/whoami') {
        const userId = url.searchParams.get('user_id') ?? '';
        if (plan.whoami.kind === 'ok' && !users.has(userId)) {
          const text = JSON.stringify({ errcode: 'M_FORBIDDEN', error: 'Application service has not registered this user' });
          res.writeHead(403, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
        } else send(res, plan.whoami, () => ({ user_id: userId }));
      } else if (url.pathname === '/_matrix/client/versions') {
        if (!plan.up) res.socket?.destroy();
        else send(res, OK, () => ({ versions: ['v1.11'] }));
      } else {
        // The application-service ping and anything else: 200 {}.
        send(res, OK, () => ({}));
      }
    });
  });
  server.keepAliveTimeout = 60_000;
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const fake: FakeHomeserver = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    plan: HEALTHY,
    users,
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of held) res.destroy();
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  return fake;
}
