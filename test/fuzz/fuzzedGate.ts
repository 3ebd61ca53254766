import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomPrivateKey, signRegistration, type RegistrationBody } from '../../src/protocol/signRegistration.js';
import { generateGate, type Gate } from '../support/gate.js';
import { freePort, waitFor } from '../support/ports.js';
import { holderOfConnection, signalIfAlive, stopped } from '../support/processTree.js';
import type { Scope } from '../support/scope.js';
import { fillText, fillValue, type PlaceholderValues } from './fill.js';
import { HEALTHY, startFakeHomeserver, type FakeHomeserver } from './fakeHomeserver.js';

export const FUZZ_SERVER = 'photon.test';

/** The built service as run.sh starts it, with two workers, against the fake homeserver, and what checks it. */
export interface FuzzedGate {
  readonly gate: Gate;
  readonly port: number;
  readonly homeserver: FakeHomeserver;
  readonly hsToken: string;
  /** Every configured secret, which no log line may show. */
  readonly secrets: readonly string[];
  /** Replaces the placeholders of arbitraries.ts in a case's strings: a fresh signed node, a known node, the secrets. */
  fill(text: string, node: RegistrationBody): string;
  fillValue(value: unknown, node: RegistrationBody): unknown;
  /** A fresh validly signed node. */
  freshNode(): RegistrationBody;
  /** POSTs a node's registration on a connection of its own, from a client address of its own. */
  register(node: RegistrationBody): Promise<{ status: number; body: string }>;
  /** GET on the metrics listener: /ready, /health. */
  probe(path: string): Promise<number>;
  /** Throws, naming what broke, unless every invariant holds now (after a case). */
  checkInvariants(): Promise<void>;
  end(): Promise<void>;
}

let clients = 0;
/** A client address no case has used: the limits, raised anyway, count nothing twice. */
const freshClient = (): string => {
  clients += 1;
  return `198.18.${(clients >> 8) & 255}.${clients & 255}`;
};

const sendRequest = (
  port: number,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
  /** A connection already open, instead of a new one. */
  socket?: Socket,
): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    const options = { host: '127.0.0.1', port, method, path, headers };
    // Without an agent Node takes the connection given (agent: false would make an agent, which opens its own).
    const req = request(socket === undefined ? { ...options, agent: false } : { ...options, createConnection: () => socket }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`${method} ${path}: no answer within 10 s`)));
    req.on('error', reject);
    req.end(body);
  });

/**
 * A connection to `port` that the process `pid` accepted (/proc says which holds it). Every other process serving
 * (the primary among them) is stopped (SIGSTOP) while it is opened, so that only `pid` can accept it, and continued
 * before anything is sent on it. Left to the kernel, the primary takes about nine connections in ten while idle, and
 * a worker can go dozens in a row without one (58 measured).
 */
async function connectionHeldBy(port: number, pid: number, serving: readonly number[]): Promise<Socket> {
  const others = serving.filter((each) => each !== pid);
  // A process gone meanwhile (its exit is the log's to tell) must not leave the others stopped.
  try {
    for (const other of others) signalIfAlive(other, 'SIGSTOP');
    // A signal takes effect a moment after kill() returns: a process still running could accept. stopped() is false
    // for a process gone too: the log says whether one exited.
    await waitFor(
      `processes ${others.join(', ')} to stop after SIGSTOP (or one of them is gone)`,
      async () => (others.every(stopped) ? true : undefined),
      1000,
      undefined,
      1,
    );
    const socket = await new Promise<Socket>((resolve, reject) => {
      const opened = connect(port, '127.0.0.1', () => resolve(opened));
      opened.once('error', reject);
    });
    let wrongHolder: number | undefined;
    try {
      await waitFor(
        `process ${pid} to accept a connection, every other process stopped`,
        async () => {
          const holder = holderOfConnection(serving, socket.localPort as number);
          if (holder !== undefined && holder !== pid) wrongHolder = holder;
          return holder === pid ? true : undefined;
        },
        5000,
        () => (wrongHolder === undefined ? undefined : `process ${wrongHolder}, stopped, accepted it`),
        2,
      );
    } catch (error) {
      socket.destroy();
      if (wrongHolder !== undefined) throw new Error(`process ${wrongHolder}, stopped, accepted a connection meant for process ${pid}`);
      throw error;
    }
    return socket;
  } finally {
    for (const other of others) signalIfAlive(other, 'SIGCONT');
  }
}

/** Lines that only a fault writes: a worker gone, an error nobody expected, a promise nobody awaited. */
const FAULT_LINES =
  /unhandled promise rejection|unexpected error|unexpected: |status=500 |exited with|exiting: |cannot be reached| critical /;

export async function startFuzzedGate(scope: Scope): Promise<FuzzedGate> {
  const dir = mkdtempSync(join(tmpdir(), 'regservice-fuzz-'));
  const secretFile = join(dir, 'shared_secret');
  const sharedSecret = randomBytes(24).toString('hex');
  writeFileSync(secretFile, sharedSecret, { mode: 0o600 });
  const homeserver = await startFakeHomeserver(FUZZ_SERVER);
  const gate = await generateGate(scope, {
    serverName: FUZZ_SERVER,
    homeserverUrl: homeserver.url,
    genconfigArgs: ['--sharesecret-file', secretFile],
  });
  const metricsPort = await freePort();
  // Verbosity 5 as the Go original's run.sh has it: every line a case can make is written, and checked.
  // Limits raised, not off, so that their code runs and never refuses what the invariants send.
  await gate.start([
    '--workers',
    '2',
    '--verbosity',
    '5',
    '--metrics-port',
    String(metricsPort),
    '--homeserver-timeout',
    '2',
    '--client-timeout',
    '3',
    '--rate-limit-client',
    '1000000',
    '--rate-limit-node',
    '1000000',
    ...['ipv4', 'ipv4-24', 'ipv6-64', 'ipv6-56', 'ipv6-48'].flatMap((ceiling) => [`--accounts-per-hour-${ceiling}`, '0']),
  ]);
  const registration = gate.registration as { hs_token: string; as_token: string };
  const secrets = [registration.hs_token, registration.as_token, sharedSecret];
  const port = Number(new URL(gate.url).port);
  const known: string[] = [];
  let checkedUpTo = 0;

  const placeholderValues = (node: RegistrationBody): PlaceholderValues => ({
    localpart: node.localpart,
    password: node.password,
    displayname: node.displayname,
    knownNode: known.at(-1) ?? node.localpart,
    hsToken: registration.hs_token,
    asToken: registration.as_token,
    sharedSecret,
  });

  const register = async (node: RegistrationBody, socket?: Socket): Promise<{ status: number; body: string }> => {
    const answer = await sendRequest(
      port,
      'POST',
      '/regapp/1/register',
      { 'content-type': 'application/json', 'x-forwarded-for': freshClient() },
      JSON.stringify(node),
      socket,
    );
    if (answer.status === 200) known.push(node.localpart);
    return answer;
  };
  const probe = async (path: string): Promise<number> => (await sendRequest(metricsPort, 'GET', path, {})).status;

  /** The workers serving now: each id the primary logged, and its pid. */
  const workers = (): Map<string, number> => {
    const output = gate.output();
    const live = new Map(
      [...output.matchAll(/ worker listening worker=(\d+) pid=(\d+)/g)].map((match) => [match[1] as string, Number(match[2])]),
    );
    for (const match of output.matchAll(/ worker (\d+) \(pid \d+\) exited/g)) live.delete(match[1] as string);
    return live;
  };

  /** Throws, naming what broke, unless every invariant holds now. */
  const invariantsHold = async (): Promise<void> => {
    homeserver.plan = HEALTHY;
    // Every process serving (the primary, 0, and each worker) still registers a fresh node from a fresh client, on a
    // connection that process accepted.
    const live = workers();
    if (live.size !== 2) throw new Error(`two workers expected, the log names ${[...live.keys()].join(', ') || 'none'}`);
    const primary = gate.process()?.child.pid as number;
    const pids = new Map([['0', primary], ...live]);
    for (const [id, pid] of pids) {
      const socket = await connectionHeldBy(port, pid, [...pids.values()]);
      const node = signRegistration(randomPrivateKey(), FUZZ_SERVER);
      const answer = await register(node, socket);
      if (answer.status !== 200) throw new Error(`a fresh node got ${answer.status} ${answer.body} from process ${id}`);
      const outcome = new RegExp(` registration localpart=${node.localpart} .*worker=${id} outcome=registered`);
      await waitFor(
        `an outcome line saying process ${id} registered ${node.localpart}`,
        async () => (outcome.test(gate.output()) ? true : undefined),
        2000,
        undefined,
        10,
      );
    }
    // /ready tells the truth: everything is healthy, so it says ready within a few seconds.
    let ready = 0;
    await waitFor(
      '/ready to answer 200 with everything healthy',
      async () => {
        ready = await probe('/ready');
        return ready === 200 ? true : undefined;
      },
      5000,
    ).catch(() => {
      throw new Error(`/ready answered ${ready} with everything healthy`);
    });
    // The log: no fault, no secret, wherever the case put them.
    const output = gate.output();
    const lines = output.slice(checkedUpTo);
    checkedUpTo = output.length;
    const fault = FAULT_LINES.exec(lines);
    if (fault !== null) throw new Error(`the log says: ${lines.slice(Math.max(0, fault.index - 200), fault.index + 300)}`);
    for (const secret of secrets)
      if (lines.includes(secret))
        throw new Error(
          `a configured secret is in the log: ${lines.slice(Math.max(0, lines.indexOf(secret) - 200), lines.indexOf(secret) + 100)}`,
        );
  };

  return {
    gate,
    port,
    homeserver,
    hsToken: registration.hs_token,
    secrets,
    fill: (text, node) => fillText(text, placeholderValues(node)),
    fillValue: (value, node) => fillValue(value, placeholderValues(node)),
    freshNode: () => signRegistration(randomPrivateKey(), FUZZ_SERVER),
    register,
    probe,
    async checkInvariants() {
      try {
        await invariantsHold();
      } catch (error) {
        // What the service said last, secrets masked: the failure's context, in CI's output too.
        const tail = gate.output().split('\n').slice(-12).join('\n');
        const masked = secrets.reduce((text, secret) => text.split(secret).join('<secret>'), tail);
        throw new Error(`${(error as Error).message}\nthe service's last lines:\n${masked}`);
      }
    },
    async end() {
      await gate.stop('SIGKILL');
      await homeserver.close();
      for (const each of [dir, gate.dir]) rmSync(each, { recursive: true, force: true });
    },
  };
}
