import type { IncomingMessage, ServerResponse } from 'node:http';
import { MatrixError } from '../protocol/matrixError.js';
import type { Logger } from '../log/logger.js';

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendMatrixError(res: ServerResponse, error: MatrixError): void {
  sendJson(res, error.status, error.toJSON(), error.headers);
}

/** The Matrix error a failure below the HTTP layer is answered with; undefined for the unexpected (a 500). */
export function toMatrixError(error: unknown): MatrixError | undefined {
  return error instanceof MatrixError ? error : undefined;
}

/** Answers whatever a route threw: its Matrix error, or 500 (logged) for anything unexpected. */
export function answerFailure(log: Logger): (error: unknown, res: ServerResponse) => void {
  return (error, res) => {
    const matrixError = toMatrixError(error);
    if (matrixError !== undefined) {
      if (!res.headersSent) sendMatrixError(res, matrixError);
      return;
    }
    log.error('unexpected error while handling a request', { reason: (error as Error)?.message ?? String(error) });
    if (!res.headersSent) sendMatrixError(res, new MatrixError(500, 'M_UNKNOWN', 'internal error'));
  };
}

/** An Expect header other than 100-continue (Node's 'checkExpectation'): 417, as a Matrix error. */
export function expectationFailed(_req: IncomingMessage, res: ServerResponse): void {
  sendMatrixError(res, new MatrixError(417, 'M_UNKNOWN', 'the Expect header asks for what this server does not do'));
}

/** An HTTP/1.1 request without Host (RFC 9112 section 3.2): 400, as a Matrix error. */
export function missingHost(res: ServerResponse): void {
  sendMatrixError(res, new MatrixError(400, 'M_UNRECOGNIZED', 'an HTTP/1.1 request needs a Host header'));
}

export function unrecognizedRequest(res: ServerResponse): void {
  sendMatrixError(res, new MatrixError(404, 'M_UNRECOGNIZED', 'unrecognized request'));
}

export function methodNotAllowed(req: IncomingMessage, res: ServerResponse): void {
  sendMatrixError(res, new MatrixError(405, 'M_UNRECOGNIZED', `method ${req.method} is not allowed here`));
}
