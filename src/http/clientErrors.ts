import type { Duplex } from 'node:stream';

const STATUS: Readonly<Record<string, [number, string]>> = {
  HPE_HEADER_OVERFLOW: [431, 'Request Header Fields Too Large'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'Request Timeout'],
};

/**
 * Answers a request Node's HTTP parser rejected (malformed framing, oversized headers, too slow)
 * with a Matrix error body instead of a bare status line, then closes the connection.
 */
export function answerClientError(error: Error & { code?: string }, socket: Duplex): void {
  if (error.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const [status, reason] = STATUS[error.code ?? ''] ?? [400, 'Bad Request'];
  const body = JSON.stringify({
    errcode: status === 408 ? 'M_UNKNOWN' : 'M_NOT_JSON',
    error: status === 408 ? 'request not received in time' : `malformed HTTP request (${error.code ?? 'parse error'})`,
  });
  // Destroyed once written: a client still sending must not keep the connection open.
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    () => socket.destroy(),
  );
}
