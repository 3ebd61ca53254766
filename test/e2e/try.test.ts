import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, it } from '../support/timedTests.js';
import { waitFor } from '../support/ports.js';
import { ownSynapseSkip } from '../support/synapse.js';

const TRY = new URL('../try.ts', import.meta.url).pathname;

describe("the quick start's `npm run try`", { skip: ownSynapseSkip() }, () => {
  it('registers a node through the gate in front of a throwaway Synapse, keeps both up, and Ctrl-C ends both and cleans up', async (t) => {
    const child = spawn(process.execPath, ['--import', 'tsx', TRY], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    t.after(() => {
      if (child.exitCode === null && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await waitFor('the smoke test', async () => (/Ctrl-C stops both/.test(output) ? true : undefined), 90_000);
    assert.match(output, /^@0x[0-9a-f]{40}:try\.localhost$/m, output);
    assert.match(output, /info registration localpart=0x[0-9a-f]{40} .*outcome=registered status=200/);
    const gateUrl = /POST to (http:\/\/127\.0\.0\.1:\d+\/regapp\/1)\/register/.exec(output)?.[1] ?? '';
    assert.equal((await fetch(`${gateUrl}/register`)).status, 405, 'the gate stays up until Ctrl-C');
    const deployment = /--out (\S+) …/.exec(output)?.[1] ?? '';
    assert.ok(existsSync(deployment));

    process.kill(child.pid ?? 0, 'SIGINT');
    assert.equal(await exited, 0, output);
    assert.ok(!existsSync(deployment), 'what it made is removed');
    await assert.rejects(fetch(`${gateUrl}/register`), 'the gate is stopped');
  });
});
