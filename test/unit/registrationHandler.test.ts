import { strict as assert } from 'node:assert';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createRegistrationHandler } from '../../src/handlers/registrationHandler.js';
import type { NewNode, RegisteredUser, Registrar } from '../../src/homeserver/registrar.js';
import { MatrixError } from '../../src/protocol/matrixError.js';
import { parseRegistrationRequest, createRegistrationVerifier } from '../../src/protocol/registrationRequest.js';
import { createAddressRecovery } from '../../src/protocol/addressRecovery.js';
import { randomPrivateKey, signRegistration } from '../../src/protocol/signRegistration.js';
import { openStore, StoreOpenError, type Store } from '../../src/store/database.js';
import { capturingLogger } from '../support/capturingLogger.js';

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

async function setup(registrar: Registrar): Promise<{ store: Store; handle: ReturnType<typeof createRegistrationHandler>; datapath: string }> {
  const datapath = mkdtempSync(join(tmpdir(), 'regservice-store-'));
  const store = await openStore(datapath);
  const handle = createRegistrationHandler({
    serverName: SERVER,
    verify: createRegistrationVerifier(SERVER, createAddressRecovery().recover),
    nodes: store.nodes,
    registrar,
    log: capturingLogger().log,
    now: () => new Date('2026-03-04T05:06:07Z'),
  });
  return { store, handle, datapath };
}

describe('registration handler with a LevelDB store on disk', () => {
  it('registers a verified node and records it only after the homeserver confirmed', async () => {
    const registrar = new ScriptedRegistrar(created);
    const { store, handle } = await setup(registrar);
    const body = signRegistration(randomPrivateKey(), SERVER);
    const user = await handle(parseRegistrationRequest(body));
    assert.equal(user.userId, `@${body.localpart}:${SERVER}`);
    assert.deepEqual(await store.nodes.get(body.localpart), {
      localpart: body.localpart,
      userId: `@${body.localpart}:${SERVER}`,
      displayname: body.displayname,
      registeredAt: '2026-03-04T05:06:07.000Z',
    });
    await store.close();
  });

  it('answers a recorded node with 409 without calling the homeserver, also after reopening the store', async () => {
    const registrar = new ScriptedRegistrar(created);
    const { store, handle, datapath } = await setup(registrar);
    const body = signRegistration(randomPrivateKey(), SERVER);
    await handle(parseRegistrationRequest(body));
    await store.close();

    const reopened = await openStore(datapath);
    const again = createRegistrationHandler({
      serverName: SERVER,
      verify: createRegistrationVerifier(SERVER, createAddressRecovery().recover),
      nodes: reopened.nodes,
      registrar,
      log: capturingLogger().log,
    });
    await assert.rejects(again(parseRegistrationRequest(body)), (error: unknown) => error instanceof MatrixError && error.status === 409);
    assert.equal(registrar.calls.length, 1);
    await reopened.close();
  });

  it('records nothing when the homeserver refuses', async () => {
    const registrar = new ScriptedRegistrar(() => Promise.reject(new MatrixError(502, 'M_UNKNOWN', 'homeserver failed: down')));
    const { store, handle } = await setup(registrar);
    const body = signRegistration(randomPrivateKey(), SERVER);
    await assert.rejects(handle(parseRegistrationRequest(body)), /homeserver failed/);
    assert.equal(await store.nodes.get(body.localpart), undefined);
    await store.close();
  });

  it('refuses a forged request before touching the store or the homeserver', async () => {
    const registrar = new ScriptedRegistrar(created);
    const { store, handle } = await setup(registrar);
    const body = signRegistration(randomPrivateKey(), SERVER);
    const other = signRegistration(randomPrivateKey(), SERVER);
    await assert.rejects(handle(parseRegistrationRequest({ ...body, password: other.password })), (error: unknown) => error instanceof MatrixError && error.status === 403);
    assert.equal(registrar.calls.length, 0);
    await store.close();
  });

  it('lets only one of two concurrent requests for a node reach the homeserver', async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const registrar = new ScriptedRegistrar(async (node) => {
      await gate;
      return created(node);
    });
    const { store, handle } = await setup(registrar);
    const request = parseRegistrationRequest(signRegistration(randomPrivateKey(), SERVER));
    const first = handle(request);
    await new Promise((resolve) => setImmediate(resolve));
    await assert.rejects(handle(request), (error: unknown) => error instanceof MatrixError && error.status === 409);
    release();
    await first;
    assert.equal(registrar.calls.length, 1);
    await store.close();
  });
});

describe('openStore', () => {
  it('refuses a second open of the same datapath with a clear message', async () => {
    const datapath = mkdtempSync(join(tmpdir(), 'regservice-lock-'));
    const store = await openStore(datapath);
    await assert.rejects(openStore(datapath), (error: unknown) => error instanceof StoreOpenError && /in use by another process/.test(error.message));
    await store.close();
  });

  it('says so when the datapath cannot be created', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'regservice-notdir-')), 'file');
    writeFileSync(file, '');
    await assert.rejects(openStore(join(file, 'datapath')), (error: unknown) => error instanceof StoreOpenError && /cannot create --datapath/.test(error.message));
  });
});
