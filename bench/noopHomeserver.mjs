// A homeserver that does nothing: shared-secret registration's nonce and registration answered at once, anything
// else 200 {}. Run as its own process by the bench, so that neither the service's CPU nor the load generator's
// includes it. Usage: node noopHomeserver.mjs <server_name>; prints its port.
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
