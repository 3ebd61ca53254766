import { connect } from 'node:net';

/** One answer as it came over the connection. */
export interface RawAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

export interface Exchange {
  readonly answers: readonly RawAnswer[];
  /** The server closed the connection (or reset it) before the client did. */
  readonly closedByServer: boolean;
  /** Bytes after the last complete answer (a cut answer). */
  readonly leftover: number;
}

export interface ExchangeOptions {
  /** Pieces written one after another, `pauseMs` apart (a request split at any byte). */
  readonly pieces: readonly string[];
  readonly pauseMs?: number;
  /** Half-close after the last piece: the client's end arrives, its socket still reads. */
  readonly halfClose?: boolean;
  /** Stop once this many answers have come (or at `timeoutMs`, or when the server closes). */
  readonly expect: number;
  readonly timeoutMs: number;
  /** Whether each request, in order, is a HEAD (its answer has no body). */
  readonly heads?: readonly boolean[];
}

/**
 * Parses as many whole HTTP/1.1 answers as `data` holds (Content-Length framed: the service always sends one). The
 * answers to HEAD requests (`heads`: whether each request in order is one) have no body whatever their Content-Length.
 */
function parseAnswers(data: Buffer, heads: readonly boolean[] = []): { answers: RawAnswer[]; rest: number } {
  const answers: RawAnswer[] = [];
  let at = 0;
  for (;;) {
    const headEnd = data.indexOf('\r\n\r\n', at, 'latin1');
    if (headEnd === -1) break;
    const head = data.subarray(at, headEnd).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '')?.[1] ?? NaN);
    const headers: Record<string, string> = {};
    for (const line of head.slice(1)) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const interim = status < 200;
    const length = interim || heads[answers.length] === true ? 0 : Number(headers['content-length'] ?? 0);
    if (headEnd + 4 + length > data.length) break;
    // An interim answer (100 Continue) is not the request's answer.
    if (!interim || Number.isNaN(status))
      answers.push({ status, headers, body: data.subarray(headEnd + 4, headEnd + 4 + length).toString('utf8') });
    at = headEnd + 4 + length;
  }
  return { answers, rest: data.length - at };
}

/** Writes raw bytes to the service and reads what comes back, as a client no HTTP library would be. */
export function exchange(port: number, options: ExchangeOptions): Promise<Exchange> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (closedByServer: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const { answers, rest } = parseAnswers(Buffer.concat(chunks), options.heads);
      resolve({ answers, closedByServer, leftover: rest });
    };
    const timer = setTimeout(() => finish(false), options.timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (parseAnswers(Buffer.concat(chunks), options.heads).answers.length >= options.expect) finish(false);
    });
    socket.on('end', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
    socket.on('connect', () => {
      void (async () => {
        for (const [index, piece] of options.pieces.entries()) {
          if (done) return;
          socket.write(Buffer.from(piece, 'latin1'));
          if (index < options.pieces.length - 1 && (options.pauseMs ?? 0) > 0)
            await new Promise((next) => setTimeout(next, options.pauseMs));
        }
        if (options.halfClose === true && !done) socket.end();
      })();
    });
  });
}

/** A request's bytes: the request line and headers as given (never normalised), the body with its Content-Length. */
export function rawRequest(
  method: string,
  path: string,
  headers: readonly (readonly [string, string])[],
  body: string | undefined,
  contentLength: 'exact' | 'none' | number = 'exact',
): string {
  const lines = [`${method} ${path} HTTP/1.1`, 'Host: 127.0.0.1', ...headers.map(([name, value]) => `${name}: ${value}`)];
  const bytes = Buffer.from(body ?? '', 'utf8');
  if (body !== undefined && contentLength === 'exact') lines.push(`Content-Length: ${bytes.length}`);
  else if (typeof contentLength === 'number') lines.push(`Content-Length: ${contentLength}`);
  return `${lines.join('\r\n')}\r\n\r\n${bytes.toString('latin1')}`;
}
