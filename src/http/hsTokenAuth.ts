import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { MatrixError } from '../protocol/matrixError.js';

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** The hs_token as workers hold it: its SHA-256, hex. */
export function hsTokenDigest(hsToken: string): string {
  return digest(hsToken).toString('hex');
}

/** The hs_token from `Authorization: Bearer …` or the legacy `access_token` query parameter. */
function presentedToken(authorization: string | undefined, query: Readonly<Record<string, unknown>>): string | undefined {
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
  if (bearer?.[1] !== undefined) return bearer[1];
  const fromQuery = query.access_token;
  return typeof fromQuery === 'string' && fromQuery !== '' ? fromQuery : undefined;
}

/**
 * Whether a request bears the homeserver's hs_token (given as its digest), compared in constant time: undefined when
 * it does, else the error to answer.
 */
export function hsTokenCheck(
  hsTokenSha256: string,
): (req: IncomingMessage, query: Readonly<Record<string, unknown>>) => MatrixError | undefined {
  const expected = Buffer.from(hsTokenSha256, 'hex');
  return (req, query) => {
    const token = presentedToken(req.headers.authorization, query);
    if (token === undefined) return new MatrixError(401, 'M_MISSING_TOKEN', 'missing hs_token');
    if (!timingSafeEqual(digest(token), expected)) return new MatrixError(403, 'M_FORBIDDEN', 'invalid hs_token');
    return undefined;
  };
}
