import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ErrorRequestHandler, RequestHandler } from 'express';
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

interface BodyParserError {
  readonly type?: string;
  readonly status?: number;
}

/** Maps anything thrown below the HTTP layer to a Matrix error body; unknown errors are logged and become 500. */
export function toMatrixError(error: unknown): MatrixError | undefined {
  if (error instanceof MatrixError) return error;
  const { type, status } = (error ?? {}) as BodyParserError;
  switch (type) {
    case 'entity.parse.failed':
      return new MatrixError(400, 'M_NOT_JSON', 'request body is not valid JSON');
    case 'entity.too.large':
      return new MatrixError(413, 'M_TOO_LARGE', 'request body is too large');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new MatrixError(415, 'M_UNKNOWN', 'request body encoding is not supported; send UTF-8 JSON');
    case 'request.aborted':
    case 'request.size.invalid':
    case 'stream.encoding.set':
      return new MatrixError(400, 'M_UNKNOWN', 'request body was incomplete');
    default:
      if (typeof status === 'number' && status >= 400 && status < 500) {
        return new MatrixError(status, 'M_UNKNOWN', 'bad request');
      }
      return undefined;
  }
}

export function errorHandler(log: Logger): ErrorRequestHandler {
  return (error: unknown, _req, res, _next) => {
    const matrixError = toMatrixError(error);
    if (matrixError !== undefined) {
      sendMatrixError(res, matrixError);
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

export const unrecognized: RequestHandler = (_req, res) => unrecognizedRequest(res);

export const methodNotAllowed: RequestHandler = (req, res) => {
  sendMatrixError(res, new MatrixError(405, 'M_UNRECOGNIZED', `method ${req.method} is not allowed here`));
};
