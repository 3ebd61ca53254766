// Reference for the HTTP figures: the least a Node server can do per request (read the body, answer 403).
import { createServer } from 'node:http';

const body = JSON.stringify({ errcode: 'M_FORBIDDEN', error: 'reference' });
createServer((req, res) => {
  req.resume();
  req.on('end', () => res.writeHead(403, { 'content-type': 'application/json', 'content-length': body.length }).end(body));
}).listen(Number(process.argv[2]), '127.0.0.1', () => process.stdout.write('ready\n'));
