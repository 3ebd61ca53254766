// A stand-in worker for the Supervisor's tests: speaks the same IPC packets as src/cluster/worker.ts. It fails to
// start (saying why) while the file named by FIXTURE_FAIL_FILE exists, and never listens (nor exits) while the file
// named by FIXTURE_STUCK_FILE does; otherwise it accepts from the primary's listening socket until told to stop (and,
// while the file named by FIXTURE_CUT_FILE exists, closes its channel to the primary and lives on).
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';

const send = (method, args = []) => process.send({ regservice: [{ kind: 'note', method, args }] });
let started = false;
let listener;
const listen = () => {
  if (!started || listener === undefined || existsSync(process.env.FIXTURE_STUCK_FILE ?? '')) return;
  createServer((_req, res) => res.end('ok')).listen(listener, () => send('listening'));
  // A worker alive but out of the primary's reach: its channel closed, its listener still up.
  if (existsSync(process.env.FIXTURE_CUT_FILE ?? '')) setTimeout(() => process.disconnect(), 200);
};
process.on('message', (message, handle) => {
  if (message === 'regservice:listener') {
    listener = handle;
    listen();
  }
  for (const envelope of message?.regservice ?? []) {
    if (envelope.method === 'start') {
      if (existsSync(process.env.FIXTURE_FAIL_FILE ?? '')) {
        send('failedToStart', ['the fixture was told to fail']);
        setTimeout(() => process.exit(1), 50);
      } else {
        started = true;
        listen();
      }
    }
    if (envelope.method === 'stop') process.exit(0);
  }
});
send('hello');
