import type { IncomingMessage } from 'node:http';
import { MatrixError } from '../protocol/matrixError.js';

const tooLarge = (): MatrixError => new MatrixError(413, 'M_TOO_LARGE', 'request body is too large');
const notJson = (): MatrixError => new MatrixError(400, 'M_NOT_JSON', 'request body is not valid JSON');

/**
 * Reads at most `limit` bytes and parses them as JSON, whatever the content type (nodes have sent
 * both). Like body-parser's strict mode: only an object or array is JSON here; an empty body is {}.
 * Rejects with 413 as soon as the body is known to be too large, without reading the rest.
 */
export function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      reject(tooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      const text = Buffer.concat(chunks, size).toString('utf8').trim();
      if (text === '') return resolve({});
      if (text[0] !== '{' && text[0] !== '[') return reject(notJson());
      try {
        resolve(JSON.parse(text));
      } catch {
        reject(notJson());
      }
    };
    const onError = (): void => {
      cleanup();
      reject(new MatrixError(400, 'M_UNKNOWN', 'request body was incomplete'));
    };
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}
