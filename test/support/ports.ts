import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

export function listenable(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(undefined));
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : undefined));
    });
  });
}

/** The first port of the kernel's ephemeral range, from which outgoing connections take their local ports. */
function ephemeralLow(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32768;
  } catch {
    return 32768;
  }
}

/**
 * A TCP port on 127.0.0.1 that was free a moment ago, chosen below the ephemeral range: a port the kernel picks for
 * port 0 can be taken meanwhile as the local end of an outgoing connection, and then the daemon cannot listen on it.
 */
export async function freePort(): Promise<number> {
  const low = 10_000;
  const high = ephemeralLow() - 1;
  for (let attempt = 0; attempt < 50 && high > low; attempt++) {
    const port = await listenable(low + Math.floor(Math.random() * (high - low)));
    if (port !== undefined) return port;
  }
  const any = await listenable(0);
  if (any === undefined) throw new Error('no free port');
  return any;
}

/**
 * Polls `probe` every `pollMs` until it gives a value; `gaveUp` names a reason to stop waiting at once (e.g. the
 * process died).
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
  gaveUp: () => string | undefined = () => undefined,
  pollMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    const reason = gaveUp();
    if (reason !== undefined) throw new Error(`gave up waiting for ${what}: ${reason}`);
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${lastError === undefined ? '' : `: ${lastError instanceof Error ? lastError.message : JSON.stringify(lastError)}`}`,
  );
}
