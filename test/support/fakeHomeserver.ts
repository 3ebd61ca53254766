import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Scope } from './scope.js';

export interface FakeRequest {
  readonly method: string;
  readonly url: string;
  readonly body: string;
}

export type FakeRoute = (request: FakeRequest, res: ServerResponse) => void;

/** An in-process stand-in for failure paths only; the real behaviour is tested against Synapse. */
export interface FakeHomeserver {
  readonly url: string;
  readonly requests: FakeRequest[];
  close(): Promise<void>;
}

export async function startFakeHomeserver(scope: Scope, route: FakeRoute): Promise<FakeHomeserver> {
  const requests: FakeRequest[] = [];
  const server: Server = createServer((req: IncomingMessage, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      const request = { method: req.method ?? '', url: req.url ?? '', body };
      requests.push(request);
      route(request, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }));
  scope.after(close);
  return { url: `http://127.0.0.1:${port}`, requests, close };
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}
