import { strict as assert } from 'node:assert';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from '../support/timedTests.js';
import { tempDir } from '../support/tempDir.js';
import { loadAddressPolicy, type AddressPolicy } from '../../src/access/addressLists.js';
import { createRegistrationService, type CallQueue, type RegistrationService } from '../../src/handlers/registrationHandler.js';
import type { NewNode, RegisteredUser, Registrar } from '../../src/homeserver/registrar.js';
import { HeldBackError, HomeserverError, MatrixError } from '../../src/protocol/matrixError.js';
import type { AccountCeilings } from '../../src/handlers/accountCeilings.js';
import { createdNothing } from '../../src/homeserver/createdNothing.js';
import { parseRegistrationRequest } from '../../src/protocol/registrationRequest.js';
import { randomPrivateKey, signRegistration } from '../../src/protocol/signRegistration.js';
import { openLevelStore } from '../../src/store/leveldb/levelStore.js';
import type { NodeStore, PendingRegistration } from '../../src/store/nodeStore.js';
import { StoreOpenError, type Store } from '../../src/store/store.js';
import { closeStores, STORE_KINDS, type StoreKind } from '../support/storeKinds.js';
import { capturingLogger } from '../support/capturingLogger.js';
import { waitFor } from '../support/ports.js';

const SERVER = 'hs.example.org';

class ScriptedRegistrar implements Registrar {
  readonly calls: NewNode[] = [];
  constructor(private readonly answer: (node: NewNode) => Promise<RegisteredUser>) {}
  register(node: NewNode): Promise<RegisteredUser> {
    this.calls.push(node);
    return this.answer(node);
  }
}

const created = (node: NewNode): Promise<RegisteredUser> => Promise.resolve({ userId: `@${node.localpart}:${SERVER}`, homeServer: SERVER });
const allowEveryone: AddressPolicy = () => {};

interface ServiceOptions {
  ceilings?: AccountCeilings;
  exists?: (userId: string) => boolean;
  policy?: AddressPolicy;
  calls?: CallQueue;
  nodes?: NodeStore;
}

function service(store: Store, registrar: Registrar, options: ServiceOptions = {}) {
  const made = createRegistrationService({
    serverName: SERVER,
    nodes: options.nodes ?? store.nodes,
    limitNode: async () => {},
    registrar,
    ...(options.calls === undefined ? {} : { calls: options.calls }),
    ...(options.ceilings === undefined ? {} : { ceilings: options.ceilings }),
    userExists: async (userId) => options.exists?.(userId) ?? false,
    policy: () => options.policy ?? allowEveryone,
    log: capturingLogger().log,
    now: () => new Date('2026-03-04T05:06:07Z'),
  });
  services.push(made);
  // From one client, as far as these tests care.
  // As the workers do: a 200 that reached its node is said so, which makes its record answered.
  const register = async (request: NewNode, address = '203.0.113.1'): Promise<RegisteredUser> => {
    const user = await made.register(request, address);
    await made.delivered(request.localpart, true);
    return user;
  };
  return { ...made, register, registerUndelivered: (request: NewNode) => made.register(request, '203.0.113.1') };
}
const services: RegistrationService[] = [];
after(() => Promise.all(services.map((made) => made.close())));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** A homeserver queue that holds every call `ms` before it runs. */
const slowQueue =
  (ms: number): CallQueue =>
  async (call) => {
    await sleep(ms);
    return call();
  };

after(closeStores);

/** A store with pending entries that an earlier run left behind: their lease is over, their holder gone. */
async function leftInterrupted(kind: StoreKind, entries: readonly PendingRegistration[]): Promise<Store> {
  const earlier = await kind.fresh({ leaseMs: 0 });
  for (const entry of entries) assert.ok((await earlier.nodes.claimPending(entry)).claimed);
  return kind.laterRun(earlier);
}
const node = () => signRegistration(randomPrivateKey(), SERVER);
/** The pending entry an attempt of 2026-01-01 left for the node. */
const interruptedAt2026 = (body: { localpart: string; displayname: string }): PendingRegistration => ({
  localpart: body.localpart,
  userId: `@${body.localpart}:${SERVER}`,
  displayname: body.displayname,
  startedAt: '2026-01-01T00:00:00.000Z',
});
const isStatus = (status: number) => (error: unknown) => error instanceof MatrixError && error.status === status;

for (const kind of STORE_KINDS)
  describe(`registration service with a ${kind.name} store`, () => {
    it('registers a verified node and records it only after the homeserver confirmed', async () => {
      const store = await kind.fresh();
      const body = node();
      let pendingDuringCall: unknown;
      const registrar = new ScriptedRegistrar(async (newNode) => {
        pendingDuringCall = await store.nodes.getPending(newNode.localpart);
        assert.equal(await store.nodes.get(newNode.localpart), undefined);
        return created(newNode);
      });
      const svc = service(store, registrar);
      const user = await svc.registerUndelivered(parseRegistrationRequest(body));
      assert.equal(user.userId, `@${body.localpart}:${SERVER}`);
      assert.ok(pendingDuringCall !== undefined, 'a pending entry exists while the homeserver is called');
      const expected = {
        localpart: body.localpart,
        userId: `@${body.localpart}:${SERVER}`,
        displayname: body.displayname,
        registeredAt: '2026-03-04T05:06:07.000Z',
        answered: false,
      };
      assert.deepEqual(
        await store.nodes.get(body.localpart),
        expected,
        'recorded before the answer is sent, unanswered until it reaches the node',
      );
      assert.equal(await store.nodes.getPending(body.localpart), undefined);
      await svc.delivered(body.localpart, false);
      assert.equal((await store.nodes.get(body.localpart))?.answered, false, 'a 200 that did not reach its node: still unanswered');
      assert.equal((await svc.register(parseRegistrationRequest(body))).userId, expected.userId, 'the lost 200, given again');
      assert.equal((await store.nodes.get(body.localpart))?.answered, true, 'answered once its 200 reached the node');
      await assert.rejects(svc.register(parseRegistrationRequest(body)), isStatus(409), 'then 409');
      await store.close();
    });

    it('answers 409 to a copy whose look at the record began before the mark of its delivered 200 was written', async () => {
      const store = await kind.fresh();
      const body = node();
      const hold: { until?: Promise<void> } = {};
      // The claim reads the record (still unanswered), then returns only after the mark is written: a slow query.
      const nodes: NodeStore = {
        ...store.nodes,
        claimPending: async (entry) => {
          const claim = await store.nodes.claimPending(entry);
          await hold.until;
          return claim;
        },
      };
      const svc = service(store, new ScriptedRegistrar(created), { nodes });
      await svc.registerUndelivered(parseRegistrationRequest(body));
      const marked = svc.delivered(body.localpart, true);
      hold.until = marked;
      await assert.rejects(svc.registerUndelivered(parseRegistrationRequest(body)), isStatus(409));
      await marked;
      assert.equal((await store.nodes.get(body.localpart))?.answered, true);
      await store.close();
    });

    it('answers a recorded node with 409 without calling the homeserver, also after reopening the store', async () => {
      const registrar = new ScriptedRegistrar(created);
      const body = node();
      let store = await kind.fresh();
      await service(store, registrar).register(parseRegistrationRequest(body));
      store = await kind.laterRun(store);
      await assert.rejects(service(store, registrar).register(parseRegistrationRequest(body)), isStatus(409));
      assert.equal(registrar.calls.length, 1);
      await store.close();
    });

    it('keeps the pending entry when the outcome is unknown, drops it on 409', async () => {
      const store = await kind.fresh();
      const timedOut = node();
      await assert.rejects(
        service(
          store,
          new ScriptedRegistrar(() => Promise.reject(new MatrixError(504, 'M_UNKNOWN', 'homeserver failed: no answer'))),
        ).register(parseRegistrationRequest(timedOut)),
        isStatus(504),
      );
      assert.equal(await store.nodes.get(timedOut.localpart), undefined);
      assert.ok((await store.nodes.getPending(timedOut.localpart)) !== undefined);

      const taken = node();
      await assert.rejects(
        service(store, new ScriptedRegistrar(() => Promise.reject(new MatrixError(409, 'M_USER_IN_USE', 'taken')))).register(
          parseRegistrationRequest(taken),
        ),
        isStatus(409),
      );
      assert.equal(await store.nodes.getPending(taken.localpart), undefined);
      await store.close();
    });

    it("takes M_USER_IN_USE after an interrupted attempt as the node's own account: recorded, answered 200, then 409", async () => {
      const store = await kind.fresh();
      const lost = node();
      // The first attempt timed out; the homeserver created the user after we stopped waiting.
      await assert.rejects(
        service(
          store,
          new ScriptedRegistrar(() => Promise.reject(new MatrixError(504, 'M_UNKNOWN', 'homeserver failed: no answer'))),
        ).register(parseRegistrationRequest(lost)),
        isStatus(504),
      );
      // The retry's existence check still says no (the homeserver had not finished), and registering meets the account.
      const svc = service(store, new ScriptedRegistrar(() => Promise.reject(new MatrixError(409, 'M_USER_IN_USE', 'taken'))));
      const user = await svc.register(parseRegistrationRequest(lost));
      assert.equal(user.userId, `@${lost.localpart}:${SERVER}`);
      assert.equal(await store.nodes.getPending(lost.localpart), undefined);
      assert.equal((await store.nodes.get(lost.localpart))?.userId, `@${lost.localpart}:${SERVER}`);
      await assert.rejects(svc.register(parseRegistrationRequest(lost)), isStatus(409), 'answered once');
      await store.close();
    });

    it('finishes an interrupted registration: the user exists, so the retry succeeds without registering again', async () => {
      const body = node();
      const userId = `@${body.localpart}:${SERVER}`;
      const store = await leftInterrupted(kind, [
        { localpart: body.localpart, userId, displayname: body.displayname, startedAt: '2026-01-01T00:00:00.000Z' },
      ]);
      const registrar = new ScriptedRegistrar(created);
      const user = await service(store, registrar, { exists: (id) => id === userId }).register(parseRegistrationRequest(body));
      assert.equal(user.userId, userId);
      assert.equal(registrar.calls.length, 0);
      assert.equal((await store.nodes.get(body.localpart))?.answered, true);
    });

    it('retries an interrupted registration whose user does not exist', async () => {
      const body = node();
      const store = await leftInterrupted(kind, [interruptedAt2026(body)]);
      const registrar = new ScriptedRegistrar(created);
      await service(store, registrar).register(parseRegistrationRequest(body));
      assert.equal(registrar.calls.length, 1);
      await store.close();
    });

    it("answers a node's request that comes while its interrupted registration is being reconciled, once that is done: never 409", async () => {
      const body = node();
      const store = await leftInterrupted(kind, [interruptedAt2026(body)]);
      const registrar = new ScriptedRegistrar(created);
      // The homeserver takes its time to say the user exists: the node's retry comes meanwhile.
      const svc = service(store, registrar, { exists: () => true, calls: slowQueue(300) });
      const reconciled = svc.reconcilePending();
      await sleep(50);
      const answer = await svc.register(parseRegistrationRequest(body));
      assert.equal(answer.userId, `@${body.localpart}:${SERVER}`);
      assert.deepEqual(await reconciled, { confirmed: 1, dropped: 0, unresolved: 0 });
      assert.equal(registrar.calls.length, 0, 'nothing created twice');
      await store.close();
    });

    it('reconciles pending entries at start: confirms existing users (answered once), drops the rest, keeps the undecidable', async () => {
      const [made, lost, unknown] = [node(), node(), node()];
      const store = await leftInterrupted(
        kind,
        [made, lost, unknown].map((body) => ({
          localpart: body.localpart,
          userId: `@${body.localpart}:${SERVER}`,
          displayname: body.displayname,
          startedAt: '2026-01-01T00:00:00.000Z',
        })),
      );
      const registrar = new ScriptedRegistrar(created);
      const svc = service(store, registrar, {
        exists: (userId) => {
          if (userId.includes(unknown.localpart)) throw new MatrixError(503, 'M_UNKNOWN', 'homeserver failed: unreachable');
          return userId.includes(made.localpart);
        },
      });
      assert.deepEqual(await svc.reconcilePending(), { confirmed: 1, dropped: 1, unresolved: 1 });
      assert.equal((await store.nodes.get(made.localpart))?.registeredAt, '2026-01-01T00:00:00.000Z');
      assert.equal(await store.nodes.getPending(lost.localpart), undefined);
      assert.ok((await store.nodes.getPending(unknown.localpart)) !== undefined);

      const first = await svc.register(parseRegistrationRequest(made));
      assert.equal(first.userId, `@${made.localpart}:${SERVER}`, 'the node that never got its answer gets it now');
      await assert.rejects(svc.register(parseRegistrationRequest(made)), isStatus(409), 'once');
      assert.equal(registrar.calls.length, 0);
      await store.close();
    });

    it('applies the allow and deny lists to verified nodes', async () => {
      const dir = tempDir('regservice-lists-');
      const [allowed, denied, stranger] = [node(), node(), node()];
      writeFileSync(
        join(dir, 'allow'),
        `# nodes of the pilot\n${allowed.localpart.toUpperCase().replace('0X', '0x')}\n${denied.localpart}\n`,
      );
      writeFileSync(join(dir, 'deny'), `${denied.localpart} # retired\n`);
      const { policy, summary } = loadAddressPolicy({ allowFile: join(dir, 'allow'), denyFile: join(dir, 'deny') });
      assert.match(summary, /allow list: 2 addresses; deny list: 1 addresses/);
      const store = await kind.fresh();
      const svc = service(store, new ScriptedRegistrar(created), { policy });
      await svc.register(parseRegistrationRequest(allowed));
      await assert.rejects(
        svc.register(parseRegistrationRequest(denied)),
        (error: unknown) => isStatus(403)(error) && /may not register/.test((error as Error).message),
      );
      await assert.rejects(
        svc.register(parseRegistrationRequest(stranger)),
        (error: unknown) => isStatus(403)(error) && /not on the list/.test((error as Error).message),
      );
      writeFileSync(join(dir, 'bad'), 'not-an-address\n');
      assert.throws(() => loadAddressPolicy({ denyFile: join(dir, 'bad') }), /bad line 1: not an address/);
      await store.close();
    });

    it('renews its lease while a registration waits in the homeserver queue: nobody may reconcile the node meanwhile', async () => {
      const store = await kind.fresh({ leaseMs: 600 });
      const body = node();
      const registrar = new ScriptedRegistrar(created);
      const registering = service(store, registrar, { calls: slowQueue(1500) }).register(parseRegistrationRequest(body));
      await sleep(1100);
      const reconcilable = (await store.nodes.listReconcilable()).map((entry) => entry.localpart);
      assert.ok(!reconcilable.includes(body.localpart), 'the lease was renewed past its first end');
      assert.equal((await registering).userId, `@${body.localpart}:${SERVER}`);
      assert.equal(registrar.calls.length, 1);
    });

    it('makes no homeserver call once its lease is gone: taken over, or not renewed while the store was down', async () => {
      const store = await kind.fresh({ leaseMs: 600 });
      for (const renewal of [async () => false, async () => Promise.reject(new Error('connection refused'))]) {
        const body = node();
        const registrar = new ScriptedRegistrar(created);
        const nodes: NodeStore = { ...store.nodes, renewPending: renewal };
        await assert.rejects(
          service(store, registrar, { calls: slowQueue(1000), nodes }).register(parseRegistrationRequest(body)),
          (error: unknown) => isStatus(503)(error) && /could not be started/.test((error as Error).message),
        );
        assert.equal(registrar.calls.length, 0);
        assert.ok((await store.nodes.getPending(body.localpart)) !== undefined, 'the entry stays for whoever holds it now');
      }
    });

    it('records an account the homeserver created as soon as the store answers again, and answers 503 meanwhile', async () => {
      const store = await kind.fresh();
      const body = node();
      let down = true;
      const nodes: NodeStore = {
        ...store.nodes,
        confirm: (record) =>
          down ? Promise.reject(new MatrixError(503, 'M_UNKNOWN', 'the registry database is unavailable')) : store.nodes.confirm(record),
      };
      const svc = service(store, new ScriptedRegistrar(created), { nodes });
      await assert.rejects(svc.register(parseRegistrationRequest(body)), isStatus(503));
      assert.equal(await store.nodes.get(body.localpart), undefined);
      down = false;
      const recorded = await waitFor('the record', async () => store.nodes.get(body.localpart), 10_000);
      assert.equal(recorded.answered, false, 'the node was told to retry: its retry gets 200 once');
      assert.equal((await svc.register(parseRegistrationRequest(body))).userId, `@${body.localpart}:${SERVER}`);
    });

    it('charges a new account to the ceilings at the claim, gives it back when the homeserver surely made none, keeps it on a timeout', async () => {
      const store = await kind.fresh();
      const charged: string[] = [];
      const refunded: string[] = [];
      let allow = true;
      const ceilings: AccountCeilings = {
        charge: async (address) => {
          if (!allow)
            throw new HeldBackError(
              429,
              'M_LIMIT_EXCEEDED',
              'too many new accounts from one IPv4 /24 this hour; retry later',
              '203.0.113.0/24',
              60_000,
            );
          charged.push(address);
          return { refund: async () => void refunded.push(address) };
        },
      };
      const answers: ((node: NewNode) => Promise<RegisteredUser>)[] = [
        () => Promise.reject(createdNothing(new MatrixError(409, 'M_USER_IN_USE', 'taken'))),
        () => Promise.reject(new HomeserverError(504, 'M_UNKNOWN', 'homeserver failed: no answer')),
        () => Promise.reject(new HomeserverError(503, 'M_UNKNOWN', 'homeserver failed: unreachable (ECONNRESET)')),
        () => Promise.reject(createdNothing(new HomeserverError(503, 'M_UNKNOWN', 'homeserver failed: unreachable (ECONNREFUSED)'))),
        (newNode) => Promise.resolve({ userId: `@${newNode.localpart}:${SERVER}`, homeServer: SERVER, passwordReset: true }),
        created,
      ];
      const registrar = new ScriptedRegistrar((newNode) => (answers.shift() as (node: NewNode) => Promise<RegisteredUser>)(newNode));
      const svc = service(store, registrar, { ceilings });
      const outcomes: string[] = [];
      for (let index = 0; index < 6; index += 1)
        outcomes.push(
          await svc.register(parseRegistrationRequest(node()), '203.0.113.9').then(
            (user) => (user.passwordReset === true ? 'reset' : 'created'),
            (error: MatrixError) => String(error.status),
          ),
        );
      assert.deepEqual(outcomes, ['409', '504', '503', '503', 'reset', 'created']);
      assert.deepEqual(charged.length, 6);
      assert.equal(
        refunded.length,
        3,
        'given back: refused (409), never reached (ECONNREFUSED), a password reset; kept: the timeout and the lost connection may have made one',
      );

      allow = false;
      const held = node();
      await assert.rejects(
        svc.register(parseRegistrationRequest(held), '203.0.113.9'),
        (error: unknown) => error instanceof HeldBackError && error.status === 429,
      );
      assert.equal(registrar.calls.length, 6, 'no homeserver call');
      assert.equal(await store.nodes.getPending(held.localpart), undefined, 'no pending entry left');
    });

    it('gives back the count and drops the entry of a registration the queue held back; a count it cannot give back is logged', async () => {
      const store = await kind.fresh();
      let refunds = 0;
      const ceilings: AccountCeilings = {
        charge: async () => ({
          refund: async () => {
            refunds += 1;
            throw new Error('the database went away');
          },
        }),
      };
      const full: CallQueue = async () => {
        throw new HeldBackError(503, 'M_UNKNOWN', 'too many registrations in progress; retry later', '203.0.113.0/24', 1000);
      };
      const registrar = new ScriptedRegistrar(created);
      const logged = capturingLogger();
      const svc = createRegistrationService({
        serverName: SERVER,
        nodes: store.nodes,
        limitNode: async () => {},
        registrar,
        calls: full,
        ceilings,
        userExists: async () => false,
        policy: () => allowEveryone,
        log: logged.log,
      });
      services.push(svc);
      const body = node();
      await assert.rejects(svc.register(parseRegistrationRequest(body), '203.0.113.9'), isStatus(503));
      assert.equal(refunds, 1);
      assert.match(logged.lines().join('\n'), /warn cannot give back a count of new accounts .*reason="the database went away"/);
      assert.equal(registrar.calls.length, 0);
      assert.equal(await store.nodes.getPending(body.localpart), undefined, 'its retry is a fresh attempt, not an interrupted one');
      await store.close();
    });

    it('lets only one of two concurrent requests for a node reach the homeserver', async () => {
      let release: () => void = () => {};
      const gate = new Promise<void>((resolve) => (release = resolve));
      const registrar = new ScriptedRegistrar(async (newNode) => {
        await gate;
        return created(newNode);
      });
      const store = await kind.fresh();
      const svc = service(store, registrar);
      const request = parseRegistrationRequest(node());
      const first = svc.register(request);
      await new Promise((resolve) => setImmediate(resolve));
      await assert.rejects(svc.register(request), isStatus(409));
      release();
      await first;
      assert.equal(registrar.calls.length, 1);
      await store.close();
    });
  });

describe('openStore', () => {
  it('refuses a second open of the same datapath with a clear message', async () => {
    const datapath = tempDir('regservice-lock-');
    const store = await openLevelStore(datapath);
    await assert.rejects(
      openLevelStore(datapath),
      (error: unknown) => error instanceof StoreOpenError && error.reason === 'locked' && /in use by another process/.test(error.message),
    );
    await store.close();
    const nowhere = join(datapath, 'typo');
    await assert.rejects(
      openLevelStore(nowhere, { create: false }),
      (error: unknown) => error instanceof StoreOpenError && error.reason === 'missing',
    );
  });

  it('says so when the datapath cannot be created', async () => {
    const file = join(tempDir('regservice-notdir-'), 'file');
    writeFileSync(file, '');
    await assert.rejects(
      openLevelStore(join(file, 'datapath')),
      (error: unknown) => error instanceof StoreOpenError && /cannot create --datapath/.test(error.message),
    );
  });
});
