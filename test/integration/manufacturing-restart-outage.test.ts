import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from 'pg';
import { spawnGateway, untilGatewayReady } from '../fixtures/gateway-process';
import { bundledModelsDir } from '../fixtures/paths';
import { cmapssEngine, DATASETS_SKIP, turbofanAsset } from '../fixtures/plant-data';
import { createScratchDatabase, ScratchDatabase } from '../fixtures/scratch-database';
import { bearer, TEST_AUTH_ENV, tokenFor } from '../fixtures/test-auth';
import { until } from '../fixtures/until';

const DATABASE_URL = process.env.DATABASE_URL;
const SKIP = !DATABASE_URL
  ? 'DATABASE_URL is not set: a killed process needs a database server that outlives it'
  : DATASETS_SKIP;

const T0 = Date.parse('2026-12-02T00:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();
const admin = bearer(tokenFor(['ml-admin']));
const scada = bearer(tokenFor(['scada'], { sub: 'scada-outage' }));
const operator = bearer(tokenFor(['plant-operator']));

/**
 * Readings a gateway answered while the database was away, then killed (SIGKILL: no shutdown hook writes what it
 * holds) once the database is back, on a PostgreSQL server the test reaches too: it makes the tables refuse writes
 * as an outage does (a trigger raising 57014, a statement cancelled), and reads what was written.
 */
describe('manufacturing: what the database did not take while away is written once it is back', { skip: SKIP }, () => {
  let scratch: ScratchDatabase;
  let db: Client;
  let modelsDir: string;
  let dataDir: string;
  const children: ChildProcess[] = [];
  const port = 40_000 + Math.floor(Math.random() * 9000);
  const base = `http://127.0.0.1:${port}`;

  async function boot(): Promise<ChildProcess> {
    const child = spawnGateway({
      ...TEST_AUTH_ENV,
      // Readings stamped at fixed dates: not refused (nor purged) once those are older than the retention.
      MANUFACTURING_RETENTION_DAYS: '0',
      NODE_ENV: 'test',
      LOG_LEVEL: 'error',
      DATABASE_URL: scratch.url,
      MODELS_DIR: modelsDir,
      DATA_DIR: dataDir,
      INFERENCE_DEVICE: 'cpu',
      WORKER_POOL_SIZE: '1',
      PORT: String(port),
      HOST: '127.0.0.1',
    });
    children.push(child);
    await untilGatewayReady(child, base, { timeoutMs: 90_000 });
    return child;
  }

  async function kill(child: ChildProcess): Promise<void> {
    const gone = new Promise((done) => child.once('exit', done));
    child.kill('SIGKILL');
    await gone;
  }

  async function call(method: string, path: string, token: string, body?: unknown) {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: token, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text(); // none for a 204
    return { status: res.status, body: (text ? JSON.parse(text) : {}) as Record<string, unknown> };
  }

  const cycles = cmapssEngine(3);
  const cyclesFrom = (from: number, to: number) =>
    Array.from({ length: to - from }, (_, i) => ({
      timestamp: iso(T0 + (from + i) * 1000),
      values: cycles[from + i].values,
    }));
  const post = (assetId: string, from: number, to: number) =>
    call('POST', `/v1/manufacturing/assets/${assetId}/readings`, scada, { readings: cyclesFrom(from, to) });
  const predicted = async (assetId: string) => {
    const res = await call(
      'GET',
      `/v1/manufacturing/assets/${assetId}/predictions?from=${iso(T0)}&to=${iso(T0 + 1_000_000)}`,
      operator,
    );
    assert.equal(res.status, 200);
    return (res.body.predictions as Array<{ at: string; value: number }>).map((p) => ({ at: p.at, value: p.value }));
  };
  const count = async (table: string, assetId: string) =>
    Number(
      (await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${table} WHERE asset_id = $1`, [assetId])).rows[0].n,
    );

  before(async () => {
    scratch = await createScratchDatabase(DATABASE_URL!, 'plant_outage');
    modelsDir = bundledModelsDir(['manufacturing']);
    dataDir = mkdtempSync(join(tmpdir(), 'plant-outage-'));
    db = new Client({ connectionString: scratch.url });
    await db.connect();
  });

  after(async () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    await db?.end().catch(() => undefined);
    await scratch?.drop();
    rmSync(modelsDir, { recursive: true, force: true });
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("a young engine's rows that gave no prediction, refused with its predictions, are written once the database is back, though it sends nothing more", async () => {
    let child = await boot();
    for (const id of ['eng-o', 'eng-ref']) {
      assert.equal((await call('PUT', `/v1/manufacturing/assets/${id}`, admin, turbofanAsset(id))).status, 200);
    }
    // The database away for the asset's rows: its first 29 cycles give no prediction (opening rows), the next 11 do.
    await db.query(
      `CREATE FUNCTION refuse_plant_rows() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused' USING ERRCODE = '57014'; END $$`,
    );
    for (const table of ['manufacturing_predictions', 'manufacturing_opening_rows']) {
      await db.query(
        `CREATE TRIGGER refuse_plant_rows BEFORE INSERT ON ${table} FOR EACH STATEMENT EXECUTE FUNCTION refuse_plant_rows()`,
      );
    }
    const refused = await post('eng-o', 0, 40);
    assert.equal(refused.status, 503, JSON.stringify(refused.body));
    assert.equal(refused.body.code, 'STORAGE_UNAVAILABLE');
    for (const table of ['manufacturing_predictions', 'manufacturing_opening_rows']) {
      await db.query(`DROP TRIGGER refuse_plant_rows ON ${table}`);
    }
    // Back: the kept predictions are written again on their own, and so are the rows that gave none.
    await until('the kept predictions written', async () =>
      (await count('manufacturing_predictions', 'eng-o')) === 11 ? true : undefined,
    );
    await until(
      'the rows that gave no prediction written, the asset sending nothing more',
      async () => ((await count('manufacturing_opening_rows', 'eng-o')) === 29 ? true : undefined),
      15_000,
    );
    await kill(child);

    child = await boot();
    // The window was rebuilt whole: the next cycles are predicted as a gateway never stopped predicts them.
    const next = await post('eng-o', 40, 42);
    assert.equal(next.status, 200, JSON.stringify(next.body));
    assert.equal(next.body.predictions, 2, 'the window rebuilt whole');
    assert.equal((await post('eng-ref', 0, 42)).status, 200);
    const reference = await predicted('eng-ref');
    assert.equal(reference.length, 13);
    assert.deepEqual(await predicted('eng-o'), reference);
    // The batch sent again is all duplicates.
    const again = await post('eng-o', 0, 40);
    assert.deepEqual([again.body.duplicates, again.body.late], [40, 0]);
    await kill(child);
  });

  it("an asset whose rows the database does not forget is not removed, so a kill leaves no removal half done, and made again it holds exactly its own readings over kills, older than the removed one's included", async () => {
    let child = await boot();
    assert.equal((await call('PUT', '/v1/manufacturing/assets/eng-k', admin, turbofanAsset('eng-k'))).status, 200);
    assert.equal((await post('eng-k', 100, 140)).body.predictions, 11);
    await db.query(
      `CREATE FUNCTION refuse_forget() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused' USING ERRCODE = '57014'; END $$`,
    );
    await db.query(
      'CREATE TRIGGER refuse_forget BEFORE DELETE ON manufacturing_opening_rows FOR EACH STATEMENT EXECUTE FUNCTION refuse_forget()',
    );
    const removed = await call('DELETE', '/v1/manufacturing/assets/eng-k', admin);
    assert.equal(removed.status, 503, JSON.stringify(removed.body));
    await kill(child);
    await db.query('DROP TRIGGER refuse_forget ON manufacturing_opening_rows');
    await db.query('DROP FUNCTION refuse_forget()');

    child = await boot();
    // Not removed: nothing half done for the kill to leave. Removed now, made again, fed a history from before the
    // removed asset's first reading.
    assert.equal((await call('GET', '/v1/manufacturing/assets/eng-k', operator)).status, 200);
    assert.equal((await call('DELETE', '/v1/manufacturing/assets/eng-k', admin)).status, 204);
    assert.equal((await call('PUT', '/v1/manufacturing/assets/eng-k', admin, turbofanAsset('eng-k'))).status, 200);
    assert.equal((await post('eng-k', 0, 35)).body.predictions, 6);
    await kill(child);

    child = await boot();
    // Its own window of 35 cycles, not the removed asset's, nor none.
    const next = await post('eng-k', 35, 36);
    assert.deepEqual([next.body.accepted, next.body.predictions], [1, 1]);
    const again = await post('eng-k', 0, 36);
    assert.deepEqual([again.body.accepted, again.body.duplicates], [0, 36]);
    await kill(child);
  });
});
