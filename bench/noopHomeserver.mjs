// A homeserver that does nothing: shared-secret registration's nonce and registration answered at once, anything
// else 200 {}. Run as its own process by the bench, so that the service's CPU does not include it. Usage: node
// noopHomeserver.mjs <server_name>; prints its port.
// Forked with an IPC channel, it is also a load generator (the second harness of section 4): sent
// { url, bodies, concurrency }, it POSTs the bodies with fetch, `concurrency` in flight, and answers
// { ms, statuses: [[status, count], ...] }.
import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';

const serverName = process.argv[2] ?? 'photon.test';
const REGISTER = '/_synapse/admin/v1/register';

const server = createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    let answer = {};
    if (req.url === REGISTER && req.method === 'GET') answer = { nonce: randomBytes(16).toString('hex') };
    else if (req.url === REGISTER && req.method === 'POST') {
      const { username } = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      answer = { user_id: `@${username}:${serverName}`, home_server: serverName };
    } else if (req.url === '/_matrix/client/versions') answer = { versions: ['v1.11'] };
    const body = JSON.stringify(answer);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`));
process.on('SIGTERM', () => process.exit(0));

async function load({ url, bodies, concurrency }) {
  const statuses = new Map();
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < bodies.length) {
        const body = bodies[next++];
        let status = 0;
        try {
          const answer = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
          await answer.arrayBuffer();
          status = answer.status;
        } catch {
          // counted as status 0
        }
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    }),
  );
  return { ms: performance.now() - started, statuses: [...statuses] };
}

process.on('message', (message) => {
  void load(message).then((outcome) => process.send(outcome));
});
