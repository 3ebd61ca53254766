import { strict as assert } from 'node:assert';
import { after, describe, it } from '../support/timedTests.js';
import pg from 'pg';
import { createRegistrationService } from '../../src/handlers/registrationHandler.js';
import { createTransactionHandler } from '../../src/handlers/transactionHandler.js';
import type { NewNode, RegisteredUser, Registrar } from '../../src/homeserver/registrar.js';
import { MatrixError, StoreUnavailableError } from '../../src/protocol/matrixError.js';
import { parseRegistrationRequest } from '../../src/protocol/registrationRequest.js';
import { randomPrivateKey, signRegistration } from '../../src/protocol/signRegistration.js';
import { copyStore } from '../../src/store/copyStore.js';
import { openPgStore } from '../../src/store/postgres/pgStore.js';
import { SCHEMA_VERSION } from '../../src/store/postgres/pgSchema.js';
import { query } from '../../src/store/postgres/pgConnection.js';
import { createPgRateLimiter } from '../../src/store/postgres/pgRateLimiter.js';
import { RATE_LIMIT_TABLE } from '../../src/store/postgres/pgLimitTable.js';
import { waitFor } from '../support/ports.js';
import { StoreOpenError, type Store } from '../../src/store/store.js';
import { capturingLogger } from '../support/capturingLogger.js';
import { closeStores, levelDb, postgres, postgresServer } from '../support/storeKinds.js';

const SERVER = 'hs.example.org';
after(closeStores);

const node = () => signRegistration(randomPrivateKey(), SERVER);
const created = (newNode: NewNode): Promise<RegisteredUser> =>
  Promise.resolve({ userId: `@${newNode.localpart}:${SERVER}`, homeServer: SERVER });

/** One gate's registration service over its own store instance (its own lease holder). */
function gate(store: Store, registrar: Registrar, exists: (userId: string) => boolean = () => false) {
  const made = createRegistrationService({
    serverName: SERVER,
    nodes: store.nodes,
    limitNode: async () => {},
    registrar,
    userExists: async (userId) => exists(userId),
    policy: () => () => {},
    log: capturingLogger().log,
  });
  // As the workers do: a 200 that reached its node is said so, which makes its record answered.
  const register = async (request: NewNode): Promise<RegisteredUser> => {
    const user = await made.register(request, '203.0.113.1');
    await made.delivered(request.localpart, true);
    return user;
  };
  return { ...made, register };
}

function countingRegistrar(answer: (node: NewNode) => Promise<RegisteredUser> = created): Registrar & { calls: number } {
  const registrar = {
    calls: 0,
    register(newNode: NewNode) {
      registrar.calls += 1;
      return answer(newNode);
    },
  };
  return registrar;
}

const isStatus = (status: number) => (error: unknown) => error instanceof MatrixError && error.status === status;

/** A gate's store on the database at `url` (migrated). */
const openGate = (url: string): Promise<Store> => openPgStore({ url, poolSize: 4, leaseMs: 60_000, migrate: true });

async function databaseUrl(): Promise<string> {
  const server = await postgresServer();
  return server.withPassword(await server.createDatabase());
}

describe('two gates on one PostgreSQL store', () => {
  it('while one gate registers a node, the other answers 503 with Retry-After and never calls the homeserver', async () => {
    const storeA = await postgres.fresh();
    const storeB = await postgres.laterRun(storeA);
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    const registrarA = countingRegistrar(async (newNode) => {
      await held;
      return created(newNode);
    });
    const registrarB = countingRegistrar();
    const request = parseRegistrationRequest(node());
    const first = gate(storeA, registrarA).register(request);
    while (registrarA.calls === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    await assert.rejects(
      gate(storeB, registrarB).register(request),
      (error: unknown) => isStatus(503)(error) && Number((error as MatrixError).headers['Retry-After']) > 0,
    );
    release();
    await first;
    await assert.rejects(gate(storeB, registrarB).register(request), isStatus(409));
    assert.equal(registrarB.calls, 0);
    assert.equal(registrarA.calls, 1);
  });

  it('never calls the homeserver for a node another gate confirmed before its claim: the claim sees the record', async () => {
    const storeA = await postgres.fresh();
    const storeB = await postgres.laterRun(storeA);
    const body = node();
    const userId = `@${body.localpart}:${SERVER}`;
    // Gate A finishes its registration exactly while gate B is between its look at the records and its claim.
    const racing: Store = {
      ...storeB,
      nodes: {
        ...storeB.nodes,
        claimPending: async (entry) => {
          await storeA.nodes.confirm({
            localpart: body.localpart,
            userId,
            displayname: body.displayname,
            registeredAt: new Date().toISOString(),
          });
          return storeB.nodes.claimPending(entry);
        },
      },
    };
    const registrarB = countingRegistrar();
    await assert.rejects(gate(racing, registrarB).register(parseRegistrationRequest(body)), isStatus(409));
    assert.equal(registrarB.calls, 0);
    assert.equal(await storeB.nodes.getPending(body.localpart), undefined, 'no pending entry left behind');
  });

  it("answers from the other gate's record when that gate confirmed the node while this gate's claim ran", async () => {
    const storeA = await postgres.fresh();
    const storeB = await postgres.laterRun(storeA);
    const [answered, unanswered] = [node(), node()];
    const confirmOnA = (body: ReturnType<typeof node>, wasAnswered: boolean) =>
      storeA.nodes.confirm({
        localpart: body.localpart,
        userId: `@${body.localpart}:${SERVER}`,
        displayname: body.displayname,
        registeredAt: new Date().toISOString(),
        answered: wasAnswered,
      });
    // Gate B's claim saw no record; gate A's record lands before B's homeserver call, which the homeserver refuses.
    const inUse = countingRegistrar(async () => {
      throw new MatrixError(409, 'M_USER_IN_USE', 'User ID already taken.');
    });
    for (const [body, wasAnswered] of [
      [answered, true],
      [unanswered, false],
    ] as const) {
      const racing: Store = {
        ...storeB,
        nodes: {
          ...storeB.nodes,
          claimPending: async (entry) => {
            const claim = await storeB.nodes.claimPending(entry);
            await confirmOnA(body, wasAnswered);
            return claim;
          },
        },
      };
      const outcome = gate(racing, inUse).register(parseRegistrationRequest(body));
      if (wasAnswered) await assert.rejects(outcome, isStatus(409), 'its 200 reached it through gate A');
      else assert.equal((await outcome).userId, `@${body.localpart}:${SERVER}`, 'its 200 never reached it: this is its answer');
      assert.equal(await storeB.nodes.getPending(body.localpart), undefined, 'no pending entry left behind');
    }
    assert.equal(inUse.calls, 2);
  });

  it("completes a dead gate's registration on another gate once its lease is over: by reconciling, or on the node's retry", async () => {
    const [reconciled, retried] = [node(), node()];
    const storeA = await postgres.fresh({ leaseMs: 1500 });
    const storeB = await postgres.laterRun(storeA, { leaseMs: 1500 });
    const onSynapse = new Set<string>();
    // Gate A reaches the homeserver, which creates the users, and dies before it hears back.
    const dying = countingRegistrar(async (newNode) => {
      onSynapse.add(`@${newNode.localpart}:${SERVER}`);
      return new Promise<RegisteredUser>(() => {});
    });
    // A dead gate renews nothing: its leases run out.
    const deadA: Store = { ...storeA, nodes: { ...storeA.nodes, renewPending: () => new Promise<boolean>(() => {}) } };
    void gate(deadA, dying).register(parseRegistrationRequest(reconciled));
    void gate(deadA, dying).register(parseRegistrationRequest(retried));
    while (dying.calls < 2) await new Promise((resolve) => setTimeout(resolve, 5));

    const registrarB = countingRegistrar();
    const gateB = gate(storeB, registrarB, (userId) => onSynapse.has(userId));
    assert.deepEqual(await gateB.reconcilePending(), { confirmed: 0, dropped: 0, unresolved: 0 }, 'leases still live');
    await assert.rejects(gateB.register(parseRegistrationRequest(retried)), isStatus(503));
    await new Promise((resolve) => setTimeout(resolve, 1600));
    const user = await gateB.register(parseRegistrationRequest(retried));
    assert.equal(user.userId, `@${retried.localpart}:${SERVER}`);
    assert.deepEqual(await gateB.reconcilePending(), { confirmed: 1, dropped: 0, unresolved: 0 });
    assert.equal((await storeB.nodes.get(reconciled.localpart))?.answered, false, 'the node gets its answer on its next request');
    assert.equal(registrarB.calls, 0, 'no second homeserver registration');
    assert.deepEqual(await storeA.nodes.listPending(), []);
  });

  it('shares rate limits and transaction ids between gates', async () => {
    const storeA = await postgres.fresh();
    const storeB = await postgres.laterRun(storeA);
    const [limitA, limitB] = [
      storeA.createRateLimiter({ name: 'client', points: 3, windowMs: 60_000 }),
      storeB.createRateLimiter({ name: 'client', points: 3, windowMs: 60_000 }),
    ];
    const decisions = [await limitA.consume('198.51.100.7'), await limitB.consume('198.51.100.7'), await limitA.consume('198.51.100.7')];
    assert.ok(decisions.every((decision) => decision.allowed));
    const spent = await limitB.consume('198.51.100.7');
    assert.ok(!spent.allowed && spent.retryAfterMs > 0 && spent.retryAfterMs <= 60_000);
    assert.ok((await limitB.consume('198.51.100.8')).allowed, 'another client has its own allowance');
    assert.ok(
      (await storeA.createRateLimiter({ name: 'node', points: 3, windowMs: 60_000 }).consume('198.51.100.7')).allowed,
      'each limit counts apart',
    );

    // Requests of one turn are charged in one statement: still exactly the allowance, in order; across gates, in total.
    const burst = await Promise.all(Array.from({ length: 5 }, () => limitA.consume('198.51.100.98')));
    assert.deepEqual(
      burst.map((decision) => decision.allowed),
      [true, true, true, false, false],
    );
    const both = await Promise.all(Array.from({ length: 8 }, (_, index) => (index % 2 === 0 ? limitA : limitB).consume('198.51.100.99')));
    assert.equal(both.filter((decision) => decision.allowed).length, 3);
    const crowd = await Promise.all(Array.from({ length: 1200 }, (_, index) => limitA.consume(`10.1.${index >> 8}.${index & 255}`)));
    assert.ok(
      crowd.every((decision) => decision.allowed),
      'a crowd of new clients, charged in batches',
    );

    // A ceiling counts only what fits, across gates; a unit given back in its window is free again, never below zero.
    const [ceilingA, ceilingB] = [
      storeA.createCeilingCounter({ name: 'accounts-ipv4-24', points: 2, windowMs: 3_600_000 }),
      storeB.createCeilingCounter({ name: 'accounts-ipv4-24', points: 2, windowMs: 3_600_000 }),
    ];
    const taken = await ceilingA.take('198.51.100.0/24');
    assert.ok(taken.taken && taken.window > Date.now() + 3_500_000);
    assert.ok((await ceilingB.take('198.51.100.0/24')).taken);
    for (let more = 0; more < 3; more += 1) {
      const refused = await (more % 2 === 0 ? ceilingA : ceilingB).take('198.51.100.0/24');
      assert.ok(!refused.taken && refused.retryAfterMs > 3_500_000);
    }
    await ceilingB.giveBack('198.51.100.0/24', taken.window);
    assert.ok((await ceilingA.take('198.51.100.0/24')).taken, 'the refusals were not counted: one given back is one free');
    assert.equal((await ceilingB.take('198.51.100.0/24')).taken, false);
    await ceilingA.giveBack('198.51.100.0/24', taken.window - 1); // another window's unit: nothing
    assert.equal((await ceilingB.take('198.51.100.0/24')).taken, false);
    for (let many = 0; many < 4; many += 1) await ceilingA.giveBack('198.51.100.0/24', taken.window);
    assert.ok((await ceilingA.take('198.51.100.0/24')).taken && (await ceilingB.take('198.51.100.0/24')).taken, 'never below zero');
    assert.equal((await ceilingA.take('198.51.100.0/24')).taken, false);

    const handler = (store: Store) =>
      createTransactionHandler({ serverName: SERVER, nodes: store.nodes, transactions: store.transactions, log: capturingLogger().log });
    assert.equal(await handler(storeA)('txn-1', { events: [] }), 'processed');
    assert.equal(await handler(storeB)('txn-1', { events: [] }), 'duplicate');
  });
});

describe("PostgreSQL claims racing another gate's confirm", () => {
  it("is no takeover when the entry it waited on was deleted by the confirm: that attempt is not this gate's to complete", async () => {
    const url = await databaseUrl();
    const [storeA, storeB] = [await openGate(url), await openGate(url)];
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    const body = node();
    const entry = {
      localpart: body.localpart,
      userId: `@${body.localpart}:${SERVER}`,
      displayname: body.displayname,
      startedAt: new Date().toISOString(),
    };
    try {
      assert.deepEqual(await storeA.nodes.claimPending(entry), { claimed: true, interrupted: false });
      // Gate A's confirm, held open: the pending entry deleted and the record written, not committed yet.
      const confirming = await pool.connect();
      try {
        await confirming.query('BEGIN');
        await confirming.query('DELETE FROM regservice_pending WHERE localpart = $1', [body.localpart]);
        await confirming.query(
          'INSERT INTO regservice_nodes (localpart, user_id, displayname, registered_at, answered) VALUES ($1, $2, $3, now(), true)',
          [body.localpart, entry.userId, body.displayname],
        );
        // Gate B's claim (its lease over A's, were A's entry still there) waits on A's row, then finds it gone.
        const claim = storeB.nodes.claimPending({ ...entry, startedAt: new Date().toISOString() });
        await new Promise((resolve) => setTimeout(resolve, 300));
        await confirming.query('COMMIT');
        const claimed = await claim;
        assert.ok(!('recorded' in claimed), 'the record was not in its snapshot');
        assert.deepEqual(claimed, { claimed: true, interrupted: false }, 'a fresh entry: no earlier attempt of its own to complete');
      } finally {
        confirming.release();
      }
    } finally {
      await pool.end();
      await Promise.all([storeA.close(), storeB.close()]);
    }
  });
});

describe('PostgreSQL rate limits under load', () => {
  it('never deadlocks: two gates charging the same clients in opposite orders, over and over', async () => {
    const url = await databaseUrl();
    const [storeA, storeB] = [await openGate(url), await openGate(url)];
    const clients = Array.from({ length: 300 }, (_, index) => `203.0.${index >> 8}.${index & 255}`);
    const [limitA, limitB] = [
      storeA.createRateLimiter({ name: 'client', points: 1_000_000, windowMs: 60_000 }),
      storeB.createRateLimiter({ name: 'client', points: 1_000_000, windowMs: 60_000 }),
    ];
    const failures: unknown[] = [];
    for (let round = 0; round < 10; round++) {
      const charges = [
        ...clients.map((client) => limitA.consume(client)),
        ...[...clients].reverse().map((client) => limitB.consume(client)),
        ...clients.slice(150).map((client) => limitA.consume(client)),
      ];
      for (const result of await Promise.allSettled(charges)) if (result.status === 'rejected') failures.push(result.reason);
    }
    assert.deepEqual(failures, []);
    await Promise.all([storeA.close(), storeB.close()]);
  });

  it('retries a statement that lost a deadlock or a serialization conflict, and answers 503 when it keeps losing', async () => {
    const url = await databaseUrl();
    const pool = new pg.Pool({ connectionString: url, max: 2 });
    try {
      await pool.query(`CREATE SEQUENCE attempts;
        CREATE FUNCTION conflict(code text, times int) RETURNS int LANGUAGE plpgsql AS $$
        BEGIN
          IF nextval('attempts') <= times THEN RAISE EXCEPTION 'chosen as the deadlock victim' USING ERRCODE = code; END IF;
          RETURN 1;
        END $$`);
      const { rows } = await query<{ conflict: number }>(pool, 'SELECT conflict($1, $2)', ['40P01', 2]);
      assert.equal(rows[0]?.conflict, 1, 'the third try went through');
      await pool.query("SELECT setval('attempts', 1, false)");
      await assert.rejects(query(pool, 'SELECT conflict($1, $2)', ['40001', 100]), (error: unknown) => {
        assert.ok(error instanceof StoreUnavailableError, String(error));
        assert.equal(error.status, 503);
        assert.ok(Number(error.headers['Retry-After']) >= 1);
        return true;
      });
      const tries = await pool.query<{ last_value: string }>('SELECT last_value FROM attempts');
      assert.equal(tries.rows[0]?.last_value, '4', 'once and three retries');
    } finally {
      await pool.end();
    }
  });

  it('keeps at most its cap of clients in the table, within one window too: the oldest windows go first', async () => {
    const url = await databaseUrl();
    const store = await openGate(url);
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    try {
      const limiter = createPgRateLimiter(pool, { name: 'client', points: 60, windowMs: 60_000 }, { maxKeys: 1000 });
      const rows = async (): Promise<number> =>
        (await pool.query<{ rows: number }>(`SELECT count(*)::int AS rows FROM ${RATE_LIMIT_TABLE} WHERE key LIKE 'client:%'`)).rows[0]
          ?.rows ?? 0;
      for (let wave = 0; wave < 5; wave++) {
        const decisions = await Promise.all(
          Array.from({ length: 1000 }, (_, index) => limiter.consume(`2001:db8:${wave}:${index.toString(16)}::/64`)),
        );
        assert.ok(decisions.every((decision) => decision.allowed));
        await waitFor('the table back under its cap', async () => ((await rows()) <= 1000 ? true : undefined), 10_000);
      }
      const latest = await pool.query<{ key: string }>(`SELECT key FROM ${RATE_LIMIT_TABLE} WHERE key = 'client:2001:db8:4:3e7::/64'`);
      assert.equal(latest.rows.length, 1, 'the newest clients are kept');
    } finally {
      await pool.end();
      await store.close();
    }
  });
});

describe('PostgreSQL schema', () => {
  it('is created once when several gates start at once, and a newer one stops the start', async () => {
    const url = await databaseUrl();
    const stores = await Promise.all(Array.from({ length: 4 }, () => openPgStore({ url, poolSize: 2, leaseMs: 1000, migrate: true })));
    await Promise.all(stores.map((store) => store.close()));
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      assert.deepEqual((await admin.query('SELECT version FROM regservice_schema')).rows, [{ version: SCHEMA_VERSION }]);
      await admin.query('UPDATE regservice_schema SET version = $1', [SCHEMA_VERSION + 1]);
    } finally {
      await admin.end();
    }
    await assert.rejects(
      openPgStore({ url, poolSize: 1, leaseMs: 1000, migrate: true }),
      (error: unknown) =>
        error instanceof StoreOpenError && error.reason === 'schema' && /newer than this matrix-regservice/.test(error.message),
    );
  });

  it('is never created or migrated by a command that only reads', async () => {
    const url = await databaseUrl();
    await assert.rejects(
      openPgStore({ url, poolSize: 1, leaseMs: 1000, migrate: false }),
      (error: unknown) =>
        error instanceof StoreOpenError && error.reason === 'missing' && /no matrix-regservice tables/.test(error.message),
    );
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      assert.equal(
        (await admin.query<{ t: string | null }>("SELECT to_regclass('regservice_schema') AS t")).rows[0]?.t,
        null,
        'still empty',
      );
      await admin.query('CREATE TABLE regservice_schema (version integer NOT NULL)');
      await admin.query('INSERT INTO regservice_schema VALUES (0)');
    } finally {
      await admin.end();
    }
    await assert.rejects(
      openPgStore({ url, poolSize: 1, leaseMs: 1000, migrate: false }),
      (error: unknown) => error instanceof StoreOpenError && /no matrix-regservice tables|older than/.test(error.message),
    );
  });

  it('reads sslmode as libpq does: prefer (the default) and allow fall back to plain text, require insists on TLS', async () => {
    const plain = await databaseUrl(); // the test server has no TLS
    const withMode = (mode: string | undefined) => plain.replace('sslmode=disable', mode === undefined ? '' : `sslmode=${mode}`);
    for (const mode of [undefined, 'prefer', 'allow', 'disable']) {
      const store = await openPgStore({ url: withMode(mode), poolSize: 1, leaseMs: 1000, migrate: true });
      await store.check();
      await store.close();
    }
    for (const mode of ['require', 'verify-full']) {
      await assert.rejects(
        openPgStore({ url: withMode(mode), poolSize: 1, leaseMs: 1000, migrate: true }),
        (error: unknown) => error instanceof StoreOpenError && /does not support SSL/.test(error.message),
        mode,
      );
    }
    await assert.rejects(
      openPgStore({ url: withMode('verify-ca'), poolSize: 1, leaseMs: 1000, migrate: true }),
      (error: unknown) => error instanceof StoreOpenError && /verify-ca requires specifying a CA with sslrootcert/.test(error.message),
    );
    await assert.rejects(
      openPgStore({ url: withMode('sometimes'), poolSize: 1, leaseMs: 1000, migrate: true }),
      (error: unknown) => error instanceof StoreOpenError && /sslmode must be one of/.test(error.message),
    );
  });

  it('refuses a wrong password with the reason, without the password', async () => {
    const server = await postgresServer();
    const url = (await server.createDatabase()).replace('postgresql://postgres@', 'postgresql://postgres:wrong-secret@');
    await assert.rejects(
      openPgStore({ url, poolSize: 1, leaseMs: 1000, migrate: true }),
      (error: unknown) =>
        error instanceof StoreOpenError && /password authentication failed/.test(error.message) && !error.message.includes('wrong-secret'),
    );
  });
});

describe('store copy', () => {
  it('copies a LevelDB registry into PostgreSQL, and copies nothing twice', async () => {
    const source = await levelDb.fresh();
    const [a, b, c] = [node(), node(), node()];
    for (const body of [a, b]) {
      await source.nodes.put({
        localpart: body.localpart,
        userId: `@${body.localpart}:${SERVER}`,
        displayname: body.displayname,
        registeredAt: '2026-01-02T03:04:05.000Z',
        lastSeen: '2026-02-03T04:05:06.000Z',
        // b's 200 never reached it: its next request gets 200 once more, on whichever gate.
        ...(body === b ? { answered: false } : {}),
      });
    }
    await source.nodes.claimPending({
      localpart: c.localpart,
      userId: `@${c.localpart}:${SERVER}`,
      displayname: c.displayname,
      startedAt: '2026-01-01T00:00:00.000Z',
    });
    await source.transactions.add('t1');
    await source.transactions.add('t2');
    const target = await postgres.fresh({ leaseMs: 0 });
    assert.deepEqual(await copyStore(source, target), {
      nodes: { copied: 2, present: 0 },
      pending: { copied: 1, present: 0 },
      transactions: { copied: 2, present: 0 },
    });
    assert.deepEqual(await copyStore(source, target), {
      nodes: { copied: 0, present: 2 },
      pending: { copied: 0, present: 1 },
      transactions: { copied: 0, present: 2 },
    });
    assert.deepEqual(await target.nodes.get(a.localpart), { ...(await source.nodes.get(a.localpart)), answered: true });
    assert.deepEqual(await target.nodes.get(b.localpart), { ...(await source.nodes.get(b.localpart)), answered: false });
    assert.deepEqual(
      (await target.nodes.listReconcilable()).map((entry) => entry.localpart),
      [c.localpart],
    );
    assert.equal(await target.transactions.has('t2'), true);
  });
});
