import { strict as assert } from 'node:assert';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from '../support/timedTests.js';
import { tempDir } from '../support/tempDir.js';
import { runDoctor } from '../../src/commands/doctor.js';
import { resolveSettings } from '../../src/config/settings.js';
import { startInProcessGate } from '../support/inProcessGate.js';
import { PG_PASSWORD } from '../support/postgres.js';
import { closeStores, postgresServer } from '../support/storeKinds.js';
import { openPgStore } from '../../src/store/postgres/pgStore.js';

describe('doctor --public-url', () => {
  it('checks the path of the registration url, not a fixed /regapp/1', async (t) => {
    const url = 'http://127.0.0.1:1/gates/photon-1';
    const gate = await startInProcessGate(t, { settings: { 'appservice-url': url } });
    const publicUrl = gate.base.replace('/gates/photon-1', '');
    const datapath = tempDir('regservice-doctor-');
    const settings = resolveSettings([
      {
        source: 'test',
        values: {
          matrixdomain: 'hs.example.org',
          matrixurl: 'http://127.0.0.1:1',
          datapath,
          sharesecret: 's',
          astoken: 'a',
          hstoken: 'h',
          'appservice-url': url,
        },
      },
    ]).settings;
    const results = await runDoctor(settings, `${publicUrl}/`);
    const routing = results.find((result) => /routes to matrix-regservice/.test(result.what));
    assert.deepEqual(routing, {
      ok: true,
      what: `${publicUrl}/gates/photon-1 routes to matrix-regservice`,
      detail: 'GET /gates/photon-1/register answers 405 M_UNRECOGNIZED',
    });
    await gate.close();
    const gone = (await runDoctor(settings, publicUrl)).find((result) => /routes to matrix-regservice/.test(result.what));
    assert.equal(gone?.ok, false);
    const datapathCheck = results.find((result) => /^datapath /.test(result.what));
    assert.deepEqual(datapathCheck?.detail, 'no database yet: the service creates it when it first starts');
    assert.equal(existsSync(join(datapath, 'regservice.leveldb')), false, 'doctor created no database');
    rmSync(datapath, { recursive: true, force: true });
  });
});

describe('doctor with --database', () => {
  after(closeStores);

  it('checks the PostgreSQL store without creating its schema, then reads it once the service made it', async () => {
    const server = await postgresServer();
    const url = server.withPassword(await server.createDatabase());
    const settings = resolveSettings([
      {
        source: 'test',
        values: {
          matrixdomain: 'hs.example.org',
          matrixurl: 'http://127.0.0.1:1',
          database: url,
          sharesecret: 's',
          astoken: 'a',
          hstoken: 'h',
        },
      },
    ]).settings;
    const databaseCheck = async () => (await runDoctor(settings, undefined)).find((result) => /^database /.test(result.what));
    const empty = await databaseCheck();
    assert.equal(empty?.ok, false);
    assert.match(empty?.detail ?? '', /no matrix-regservice tables/);
    assert.doesNotMatch(empty?.what ?? '', new RegExp(PG_PASSWORD), 'the password is never shown');
    const store = await openPgStore({ url, poolSize: 1, leaseMs: 1000, migrate: true });
    await store.nodes.put({ localpart: `0x${'ab'.repeat(20)}`, userId: 'u', displayname: 'd', registeredAt: new Date().toISOString() });
    await store.close();
    assert.deepEqual(await databaseCheck(), {
      ok: true,
      what: `database ${url.replace(PG_PASSWORD, '***')} reachable, schema current`,
      detail: '1 registered nodes, 0 registrations pending',
    });
  });
});
