import { connect, type Socket } from 'node:net';

export interface RawResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/**
 * Raw HTTP/1.1 on one connection, for what a fetch cannot send: pipelined requests, a half-close, missing or odd
 * headers. The answers are read by their Content-Length (every answer of the service has one).
 */
export class RawConnection {
  private readonly socket: Socket;
  private buffer = Buffer.alloc(0);
  private readonly parsed: RawResponse[] = [];
  private ended = false;
  private readonly waiters = new Set<() => void>();

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.parse();
      this.wake();
    });
    // The server's FIN: it will send nothing more (this side may still write, as a half-closed client does).
    for (const event of ['end', 'close']) {
      socket.on(event, () => {
        this.ended = true;
        this.wake();
      });
    }
    socket.on('error', () => {});
  }

  static open(port: number, host = '127.0.0.1'): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port, host, allowHalfOpen: true }, () => resolve(new RawConnection(socket)));
      socket.once('error', reject);
    });
  }

  write(data: string): void {
    this.socket.write(data);
  }

  /** Sends FIN: nothing more will be sent, the answers may still come. */
  halfClose(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Gone at once, as a client that crashed: RST, where destroy() sends FIN (which a server may take for a half-close). */
  reset(): void {
    this.socket.resetAndDestroy();
  }

  /** This end's port: /proc tells which process holds the other end (holderOfConnection). */
  get localPort(): number {
    return this.socket.localPort as number;
  }

  get responses(): readonly RawResponse[] {
    return this.parsed;
  }

  /** Whether the server ended the connection. */
  get closed(): boolean {
    return this.ended;
  }

  /** Waits until `count` answers came, or the connection closed, or `timeoutMs` passed; returns the answers so far. */
  async waitFor(count: number, timeoutMs: number): Promise<readonly RawResponse[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.parsed.length < count && !this.ended && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
        this.waiters.add(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.parsed;
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
    this.waiters.clear();
  }

  private parse(): void {
    for (;;) {
      const end = this.buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = this.buffer.subarray(0, end).toString('latin1').split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of head.slice(1)) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      const length = Number(headers['content-length'] ?? 0);
      if (this.buffer.length < end + 4 + length) return;
      const status = Number(head[0]?.split(' ')[1]);
      this.parsed.push({ status, headers, body: this.buffer.subarray(end + 4, end + 4 + length).toString('utf8') });
      this.buffer = this.buffer.subarray(end + 4 + length);
    }
  }
}

/** A POST of `body` as JSON to `path`, as one HTTP/1.1 request's text. */
export function postText(path: string, body: unknown, headers: Readonly<Record<string, string>> = {}): string {
  const text = JSON.stringify(body);
  const lines = Object.entries({ host: 'gate.test', 'content-type': 'application/json', ...headers }).map(
    ([name, value]) => `${name}: ${value}`,
  );
  return `POST ${path} HTTP/1.1\r\n${lines.join('\r\n')}\r\ncontent-length: ${Buffer.byteLength(text)}\r\n\r\n${text}`;
}
