import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { after, before, describe, it } from '../support/timedTests.js';
import { suiteScope } from '../support/scope.js';
import { childrenOf } from '../support/processTree.js';
import type { Gate } from '../support/gate.js';
import { gateBesideSynapse, type GateBesideSynapse } from '../support/gateBesideSynapse.js';
import { hostileRequests, type RawRequest } from '../support/hostileRequests.js';
import { requestJson } from '../support/matrixClient.js';
import { createAdmin, ownSynapseSkip, type RunningSynapse } from '../support/synapse.js';

const skip = ownSynapseSkip();
const serverName = 'photon.test';
const COUNT = 10_000;

interface RawAnswer {
  readonly status: number;
  readonly body: string;
}

function send(agent: Agent, port: number, raw: RawRequest): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: raw.method, path: raw.path, headers: raw.headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(raw.body);
  });
}

/** The RSS of the largest process of the service: the primary or one of its workers, which parse the requests. */
function rssKb(pid: number): number {
  const of = (each: number): number => {
    try {
      return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${each}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      return 0; // a worker that was just replaced
    }
  };
  return Math.max(of(pid), ...childrenOf(pid).map(of));
}

describe('hostile input against the running service and a real Synapse', { skip }, () => {
  const scope = suiteScope();
  let beside: GateBesideSynapse;
  let synapse: RunningSynapse;
  let gate: Gate;
  let adminToken: string;

  const userCount = async (): Promise<number> => {
    const answer = await requestJson('GET', `${synapse.url}/_synapse/admin/v2/users?guests=true&limit=1`, undefined, adminToken);
    return Number(answer.body.total);
  };

  before(async () => {
    beside = await gateBesideSynapse(scope, serverName, 'regservice-hostile-');
    gate = beside.gate;
    if (beside.synapse === undefined) throw new Error('this test starts its own Synapse (ownSynapseSkip)');
    synapse = beside.synapse;
    adminToken = await createAdmin(synapse, `admin${randomBytes(4).toString('hex')}`, randomBytes(16).toString('hex'));
    // No rate limits: every request must reach validation, not stop at a 429.
    await gate.start(['--verbosity', '3', '--rate-limit-client', '0', '--rate-limit-node', '0']);
  });

  after(async () => {
    if (beside !== undefined) await beside.end();
  });

  it(`answers ${COUNT} malformed, forged and tricky requests with 4xx Matrix errors, stays up in bounded memory, and creates no user`, async () => {
    const usersBefore = await userCount();
    const pid = gate.process()?.child.pid as number;
    const requests = hostileRequests(COUNT, serverName);
    const port = Number(new URL(gate.url).port);
    const agent = new Agent({ keepAlive: true, maxSockets: 16 });
    const failures: string[] = [];
    const byKind = new Map<string, Map<number, number>>();
    let rssPeakKb = 0;
    let rssHalfKb = 0;
    const rssStartKb = rssKb(pid);

    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < requests.length) {
        const raw = requests[next++] as RawRequest;
        const answer = await send(agent, port, raw).catch((error: Error) => ({ status: -1, body: error.message }));
        const counts = byKind.get(raw.kind) ?? new Map<number, number>();
        counts.set(answer.status, (counts.get(answer.status) ?? 0) + 1);
        byKind.set(raw.kind, counts);
        let body: { errcode?: unknown; error?: unknown } = {};
        try {
          body = JSON.parse(answer.body) as typeof body;
        } catch {
          /* reported below */
        }
        const ok =
          answer.status >= 400 &&
          answer.status < 500 &&
          typeof body.errcode === 'string' &&
          body.errcode.startsWith('M_') &&
          typeof body.error === 'string';
        if (!ok && failures.length < 10)
          failures.push(`${raw.kind}: ${raw.method} ${raw.path.slice(0, 80)} → ${answer.status} ${answer.body.slice(0, 120)}`);
        if (next % 500 === 0) {
          rssPeakKb = Math.max(rssPeakKb, rssKb(pid));
          if (next === requests.length / 2) rssHalfKb = rssPeakKb;
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    agent.destroy();

    assert.deepEqual(failures, [], 'every answer is a 4xx Matrix error');
    const summary = [...byKind].map(([kind, counts]) => `${kind}: ${[...counts].map(([status, n]) => `${status}×${n}`).join(' ')}`);
    process.stdout.write(`# hostile input answers by kind:\n${summary.map((line) => `#   ${line}`).join('\n')}\n`);
    assert.ok(byKind.get('forged signature')?.has(403), 'forged signatures reached signature checking');

    assert.equal(gate.process()?.child.exitCode, null, 'the process is still up');
    assert.equal((await requestJson('GET', `${gate.url}/register`)).status, 405, 'and still answering');
    const mb = (kb: number): number => Math.round(kb / 1024);
    process.stdout.write(
      `# RSS: ${mb(rssStartKb)} MB at start, ${mb(rssHalfKb)} MB at peak over the first half, ${mb(rssPeakKb)} MB over all\n`,
    );
    // Bounded: the second 5,000 requests add little to what the first 5,000 needed, and the total stays modest.
    assert.ok(rssPeakKb < rssHalfKb + 48 * 1024, `memory kept growing: ${mb(rssHalfKb)} MB after half, ${mb(rssPeakKb)} MB after all`);
    assert.ok(rssPeakKb < 256 * 1024, `peak RSS ${mb(rssPeakKb)} MB`);
    assert.equal(await userCount(), usersBefore, 'no user was created on the homeserver');
  });
});
