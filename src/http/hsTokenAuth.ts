import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import { MatrixError } from '../protocol/matrixError.js';
import { sendMatrixError } from './errorResponses.js';

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** The hs_token as workers hold it: its SHA-256, hex. */
export function hsTokenDigest(hsToken: string): string {
  return digest(hsToken).toString('hex');
}

/** The hs_token from `Authorization: Bearer …` or the legacy `access_token` query parameter. */
function presentedToken(authorization: string | undefined, query: unknown): string | undefined {
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
  if (bearer?.[1] !== undefined) return bearer[1];
  const fromQuery = (query as Record<string, unknown> | undefined)?.access_token;
  return typeof fromQuery === 'string' && fromQuery !== '' ? fromQuery : undefined;
}

/** Lets through only requests bearing the homeserver's hs_token (given as its digest), compared in constant time. */
export function requireHsToken(hsTokenSha256: string): RequestHandler {
  const expected = Buffer.from(hsTokenSha256, 'hex');
  return (req, res, next) => {
    const token = presentedToken(req.headers.authorization, req.query);
    if (token === undefined) {
      sendMatrixError(res, new MatrixError(401, 'M_MISSING_TOKEN', 'missing hs_token'));
      return;
    }
    if (!timingSafeEqual(digest(token), expected)) {
      sendMatrixError(res, new MatrixError(403, 'M_FORBIDDEN', 'invalid hs_token'));
      return;
    }
    next();
  };
}
