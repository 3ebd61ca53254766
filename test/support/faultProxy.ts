import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Scope } from './scope.js';

/** What the proxy does with one request on its way to the homeserver. */
export type Fault =
  | 'pass'
  /** Drop the connection without answering. */
  | 'refuse'
  /** Never answer. */
  | 'hang'
  /** Answer 200 with an HTML page, as a misconfigured reverse proxy would. */
  | 'html'
  /** Keep the request from the homeserver, never answering. */
  | 'hold-request'
  /** Let the homeserver act on the request, then never pass its answer on. */
  | 'hold-response'
  /** Let the homeserver act on the request, and pass its answer on a second and a half later. */
  | 'slow';

export interface FaultProxy {
  readonly url: string;
  /** Chooses the fault per request; `pass` by default. */
  fault: (method: string, path: string) => Fault;
  /** Requests seen, as "METHOD /path" (path without the query). */
  readonly seen: string[];
  /** Answers the homeserver gave to requests held with hold-response. */
  readonly heldAnswers: number[];
  openSockets(): number;
  close(): Promise<void>;
}

async function forward(target: string, req: IncomingMessage, body: Buffer): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (typeof value === 'string' && !['host', 'connection', 'content-length', 'transfer-encoding'].includes(name)) headers[name] = value;
  }
  const response = await fetch(`${target}${req.url ?? '/'}`, {
    method: req.method ?? 'GET',
    headers,
    body: body.length === 0 || req.method === 'GET' ? null : body,
  });
  return { status: response.status, headers: response.headers, body: Buffer.from(await response.arrayBuffer()) };
}

/** An HTTP proxy in front of the real homeserver that injects faults on demand. */
export async function startFaultProxy(scope: Scope, target: string): Promise<FaultProxy> {
  const sockets = new Set<Socket>();
  const proxy: FaultProxy = {
    url: '',
    fault: () => 'pass',
    seen: [],
    heldAnswers: [],
    openSockets: () => sockets.size,
    close: async () => {},
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      proxy.seen.push(`${req.method} ${path}`);
      const fault = proxy.fault(req.method ?? 'GET', path);
      if (fault === 'refuse') return req.socket.destroy();
      if (fault === 'hang' || fault === 'hold-request') return;
      if (fault === 'html') return res.writeHead(200, { 'content-type': 'text/html' }).end('<html><body>502 Bad Gateway</body></html>');
      forward(target, req, Buffer.concat(chunks)).then(
        (answer) => {
          if (fault === 'hold-response') {
            proxy.heldAnswers.push(answer.status);
            return;
          }
          const pass = (): void => {
            res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/json' }).end(answer.body);
          };
          if (fault === 'slow') setTimeout(pass, 1500);
          else pass();
        },
        () => req.socket.destroy(),
      );
    });
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }));
  scope.after(close);
  Object.assign(proxy, { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close });
  return proxy;
}
