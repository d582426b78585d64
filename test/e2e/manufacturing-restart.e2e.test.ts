import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { alarmStream } from '../fixtures/alarm-stream';
import { spawnGateway, untilGatewayReady } from '../fixtures/gateway-process';
import { bundledModelsDir } from '../fixtures/paths';
import { ai4iReadings, cmapssEngine, DATASETS_SKIP, millAsset, turbofanAsset } from '../fixtures/plant-data';
import { createTestApp } from '../fixtures/test-app';
import { bearer, TEST_AUTH_ENV, tokenFor } from '../fixtures/test-auth';
import { freshDataDir } from '../fixtures/test-data-dir';
import { until } from '../fixtures/until';

const T0 = Date.parse('2026-12-01T00:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();
const admin = bearer(tokenFor(['ml-admin']));
const scada = bearer(tokenFor(['scada'], { sub: 'scada-restart' }));
const operator = bearer(tokenFor(['plant-operator']));

interface Summary {
  accepted: number;
  duplicates: number;
  late: number;
  predictions: number;
}

/**
 * A gateway run as its own process on `port`, for a test to kill (SIGKILL) and boot again on the same data: `boot`
 * starts it, `ready` waits for its readiness, `call` sends a request that must answer 200 and gives its JSON.
 */
function killableGateway(modelsDir: string, dataDir: string, port: number, env: Record<string, string> = {}) {
  const base = `http://127.0.0.1:${port}`;
  const boot = (): ChildProcess =>
    spawnGateway(
      {
        ...TEST_AUTH_ENV,
        // Readings stamped at fixed dates: not refused (nor purged) once those are older than the retention.
        MANUFACTURING_RETENTION_DAYS: '0',
        NODE_ENV: 'test',
        LOG_LEVEL: 'warn',
        MODELS_DIR: modelsDir,
        INFERENCE_DEVICE: 'cpu',
        WORKER_POOL_SIZE: '1',
        DATA_DIR: dataDir,
        PORT: String(port),
        HOST: '127.0.0.1',
        ...env,
      },
      { nodeArgs: ['--max-semi-space-size=32'] },
    );
  const ready = (child: ChildProcess) => untilGatewayReady(child, base, { timeoutMs: 90_000 });
  const call = async (method: string, path: string, token: string, body?: unknown) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: token, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    assert.equal(res.status, 200, await res.clone().text());
    return (await res.json()) as Record<string, unknown>;
  };
  return { boot, ready, call };
}

/**
 * C-MAPSS engine 1 fed to the turbofan asset `assetId` of gateways over one data directory, each made by `start` (a
 * restart is a second `start`): `make` puts the asset, `post` sends cycles `from` to `to` and gives their summary.
 */
async function engineOverRestarts(modelsDir: string, assetId: string) {
  const dataDir = await freshDataDir();
  const cycles = cmapssEngine(1);
  const cycle = (i: number) => ({ timestamp: iso(T0 + i * 1000), values: cycles[i].values });
  return {
    start: () => createTestApp({ MODELS_DIR: modelsDir, DATA_DIR: dataDir }),
    make: (http: ReturnType<typeof request>) =>
      http
        .put(`/v1/manufacturing/assets/${assetId}`)
        .set('Authorization', admin)
        .send(turbofanAsset(assetId))
        .expect(200),
    post: (http: ReturnType<typeof request>, from: number, to: number) =>
      http
        .post(`/v1/manufacturing/assets/${assetId}/readings`)
        .set('Authorization', scada)
        .send({ readings: Array.from({ length: to - from }, (_, i) => cycle(from + i)) })
        .expect(200)
        .then((res) => res.body as Summary),
  };
}

describe('manufacturing: an asset takes up where it left off after a restart', { skip: DATASETS_SKIP }, () => {
  let modelsDir: string;
  before(() => {
    modelsDir = bundledModelsDir(['manufacturing']);
  });
  after(() => rmSync(modelsDir, { recursive: true, force: true }));

  it("a remaining-useful-life asset's window and a mill's last tag values carry over a restart", async () => {
    const dataDir = await freshDataDir();
    const start = () => createTestApp({ MODELS_DIR: modelsDir, DATA_DIR: dataDir });
    const cycles = cmapssEngine(1);
    const post = (http: ReturnType<typeof request>, assetId: string, readings: unknown[]) =>
      http
        .post(`/v1/manufacturing/assets/${assetId}/readings`)
        .set('Authorization', scada)
        .send({ readings })
        .expect(200)
        .then((res) => res.body as Summary);
    const cycle = (i: number) => ({ timestamp: iso(T0 + i * 1000), values: cycles[i].values });

    let app = await start();
    let http = request(app.getHttpServer());
    await http
      .put('/v1/manufacturing/assets/eng-r')
      .set('Authorization', admin)
      .send(turbofanAsset('eng-r'))
      .expect(200);
    await http.put('/v1/manufacturing/assets/mill-t').set('Authorization', admin).send(millAsset('mill-t')).expect(200);
    await http
      .put('/v1/manufacturing/assets/eng-d')
      .set('Authorization', admin)
      .send(turbofanAsset('eng-d'))
      .expect(200);
    const first = await post(
      http,
      'eng-r',
      Array.from({ length: 60 }, (_, i) => cycle(i)),
    );
    assert.equal(first.predictions, 31, 'a window of 30 cycles: predictions from the 30th on');
    await post(
      http,
      'eng-d',
      Array.from({ length: 60 }, (_, i) => cycle(i)),
    );
    const [row] = ai4iReadings(false, 1);
    assert.equal((await post(http, 'mill-t', [{ timestamp: iso(T0), values: row }])).predictions, 1);
    await app.close();

    app = await start();
    http = request(app.getHttpServer());
    // Every cycle after the restart has its prediction; a cycle sent again before it (a redelivery) is a duplicate.
    const next = await post(
      http,
      'eng-r',
      Array.from({ length: 11 }, (_, i) => cycle(59 + i)),
    );
    assert.deepEqual([next.accepted, next.duplicates, next.predictions], [10, 1, 10]);
    // The first batch sent again: duplicates, those that gave no prediction (the first 29 cycles) included.
    const again = await post(
      http,
      'eng-r',
      Array.from({ length: 60 }, (_, i) => cycle(i)),
    );
    assert.deepEqual([again.duplicates, again.late], [60, 0]);
    // An asset removed and made again after the restart starts empty, as within one run.
    await http.delete('/v1/manufacturing/assets/eng-d').set('Authorization', admin).expect(204);
    await http
      .put('/v1/manufacturing/assets/eng-d')
      .set('Authorization', admin)
      .send(turbofanAsset('eng-d'))
      .expect(200);
    const fresh = await post(
      http,
      'eng-d',
      Array.from({ length: 10 }, (_, i) => cycle(60 + i)),
    );
    assert.deepEqual([fresh.accepted, fresh.predictions], [10, 0]);
    // A SCADA that reports by exception: only the torque changed, the other tags keep their last values.
    const changed = await post(http, 'mill-t', [{ timestamp: iso(T0 + 1000), values: { torque: row.torque + 1 } }]);
    assert.equal(changed.predictions, 1);
    const predictions = await http
      .get(`/v1/manufacturing/assets/eng-r/predictions?from=${iso(T0)}&to=${iso(T0 + 100_000)}`)
      .set('Authorization', operator)
      .expect(200);
    assert.equal((predictions.body as { predictions: unknown[] }).predictions.length, 41);
    await app.close();
  });

  it('a young asset (fewer than 59 cycles, fewer than a window) and a mill missing tags predict after a kill as without it', async () => {
    const { boot, ready, call } = killableGateway(modelsDir, await freshDataDir(), 3990 + (process.pid % 9));
    const post = async (assetId: string, readings: unknown[]) =>
      (await call('POST', `/v1/manufacturing/assets/${assetId}/readings`, scada, { readings })) as unknown as Summary;
    const predicted = async (assetId: string) =>
      (
        (await call(
          'GET',
          `/v1/manufacturing/assets/${assetId}/predictions?from=${iso(T0)}&to=${iso(T0 + 100_000)}`,
          operator,
        )) as { predictions: Array<{ at: string; value: number; modes: unknown }> }
      ).predictions.map((p) => ({ at: p.at, value: p.value, modes: p.modes }));
    const cycles = cmapssEngine(2);
    const cycle = (i: number) => ({ timestamp: iso(T0 + i * 1000), values: cycles[i].values });
    const cyclesFrom = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => cycle(from + i));
    const [row] = ai4iReadings(false, 1);
    const { air_temp, process_temp, ...rest } = row;

    let child = boot();
    try {
      await ready(child);
      for (const id of ['eng-40', 'eng-10', 'eng-ref']) {
        await call('PUT', `/v1/manufacturing/assets/${id}`, admin, turbofanAsset(id));
      }
      for (const id of ['mill-p', 'mill-ref'])
        await call('PUT', `/v1/manufacturing/assets/${id}`, admin, millAsset(id));
      assert.equal((await post('eng-40', cyclesFrom(0, 40))).predictions, 11);
      assert.equal((await post('eng-10', cyclesFrom(0, 10))).predictions, 0);
      // Only the temperatures so far: no prediction until every tag has had a value.
      assert.equal((await post('mill-p', [{ timestamp: iso(T0), values: { air_temp, process_temp } }])).predictions, 0);
      // Answered: kept. A host that goes down now loses none of it.
      const gone = new Promise((done) => child.once('exit', done));
      child.kill('SIGKILL');
      await gone;

      child = boot();
      await ready(child);
      // The next reading of each is predicted as a gateway that was never restarted predicts it (eng-ref, mill-ref).
      assert.deepEqual(
        [
          (await post('eng-40', cyclesFrom(40, 42))).predictions,
          (await post('eng-10', cyclesFrom(10, 30))).predictions,
        ],
        [2, 1],
        'the windows were restored whole',
      );
      assert.equal((await post('mill-p', [{ timestamp: iso(T0 + 1000), values: rest }])).predictions, 1);
      await post('eng-ref', cyclesFrom(0, 42));
      await post('mill-ref', [
        { timestamp: iso(T0), values: { air_temp, process_temp } },
        { timestamp: iso(T0 + 1000), values: rest },
      ]);
      const reference = await predicted('eng-ref');
      assert.equal(reference.length, 13);
      assert.deepEqual(await predicted('eng-40'), reference);
      assert.deepEqual(await predicted('eng-10'), reference.slice(0, 1));
      assert.deepEqual(await predicted('mill-p'), await predicted('mill-ref'));
      // What was sent before the kill is a duplicate, the rows that gave no prediction included.
      const again = await post('eng-10', cyclesFrom(0, 10));
      assert.deepEqual([again.duplicates, again.late], [10, 0]);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('an asset removed and made again, then restarted before its next reading, starts empty as within one run', async () => {
    const { start, make, post } = await engineOverRestarts(modelsDir, 'eng-m');
    let app = await start();
    let http = request(app.getHttpServer());
    try {
      await make(http);
      assert.equal((await post(http, 0, 40)).predictions, 11);
      await http.delete('/v1/manufacturing/assets/eng-m').set('Authorization', admin).expect(204);
      await make(http);
    } finally {
      await app.close();
    }

    app = await start();
    http = request(app.getHttpServer());
    try {
      // Not the window of the asset before it was removed: no prediction until a window of its own is full.
      const next = await post(http, 40, 41);
      assert.deepEqual([next.accepted, next.predictions], [1, 0]);
      assert.equal((await post(http, 41, 69)).predictions, 0);
      assert.equal((await post(http, 69, 70)).predictions, 1);
    } finally {
      await app.close();
    }
  });

  it("an asset made again and sent readings older than the removed one's last holds exactly its own over a restart", async () => {
    const { start, make, post } = await engineOverRestarts(modelsDir, 'eng-o');
    const reference = await engineOverRestarts(modelsDir, 'eng-o');
    const predicted = async (http: ReturnType<typeof request>) =>
      (
        (
          await http
            .get(`/v1/manufacturing/assets/eng-o/predictions?from=${iso(T0)}&to=${iso(T0 + 99_000)}`)
            .set('Authorization', operator)
            .expect(200)
        ).body as { predictions: Array<{ at: string; value: number }> }
      ).predictions.map((p) => ({ at: p.at, value: p.value }));
    let app = await start();
    let http = request(app.getHttpServer());
    try {
      await make(http);
      // The removed asset's cycles stamped from T0 + 100 s on; the new one's (a history replayed) before them.
      assert.equal((await post(http, 100, 140)).predictions, 11);
      await http.delete('/v1/manufacturing/assets/eng-o').set('Authorization', admin).expect(204);
      await make(http);
      assert.equal((await post(http, 0, 35)).predictions, 6);
    } finally {
      await app.close();
    }

    app = await start();
    http = request(app.getHttpServer());
    let restarted: Array<{ at: string; value: number }>;
    try {
      // Its own window of 35 cycles, not the removed asset's (nor none: before, the removed asset's window mark, newer
      // than every reading of the new one, left it empty, so cycle 35 gave no prediction and 0-34 were taken as new).
      const next = await post(http, 35, 36);
      assert.deepEqual([next.accepted, next.predictions], [1, 1]);
      const again = await post(http, 0, 36);
      assert.deepEqual([again.accepted, again.duplicates], [0, 36]);
      restarted = await predicted(http);
    } finally {
      await app.close();
    }

    // The same cycles sent to an asset never removed nor restarted.
    app = await reference.start();
    http = request(app.getHttpServer());
    try {
      await reference.make(http);
      assert.equal((await reference.post(http, 0, 36)).predictions, 7);
      assert.deepEqual(restarted, await predicted(http));
    } finally {
      await app.close();
    }
  });

  it('an asset whose rows the database cannot forget is not removed (503), so a crash after it leaves nothing undone: removed once it is back, made again and restarted, it does not take up the old window', async () => {
    const { start, make, post } = await engineOverRestarts(modelsDir, 'eng-x');
    let app = await start();
    let http = request(app.getHttpServer());
    try {
      await make(http);
      assert.equal((await post(http, 0, 40)).predictions, 11);
      const db = app.get(DataSource);
      // 57014 (a statement cancelled) is an outage: the removed asset's opening rows are not forgotten.
      await db.query(
        `CREATE FUNCTION refuse_forget() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused' USING ERRCODE = '57014'; END $$`,
      );
      await db.query(
        'CREATE TRIGGER refuse_forget BEFORE DELETE ON manufacturing_opening_rows FOR EACH STATEMENT EXECUTE FUNCTION refuse_forget()',
      );
      const removed = await http.delete('/v1/manufacturing/assets/eng-x').set('Authorization', admin);
      assert.equal(removed.status, 503, JSON.stringify(removed.body));
      assert.equal((removed.body as { code: string }).code, 'STORAGE_UNAVAILABLE');
      assert.match((removed.body as { detail: string }).detail, /could not be removed/);
      // The trigger stays over the shutdown: a last try there would do what a crash does not.
    } finally {
      await app.close();
    }

    app = await start();
    http = request(app.getHttpServer());
    try {
      const db = app.get(DataSource);
      await db.query('DROP TRIGGER refuse_forget ON manufacturing_opening_rows');
      await db.query('DROP FUNCTION refuse_forget()');
      // Not removed (before, it was, its rows left, and nothing after the crash forgot them): it is now.
      await http.get('/v1/manufacturing/assets/eng-x').set('Authorization', operator).expect(200);
      await http.delete('/v1/manufacturing/assets/eng-x').set('Authorization', admin).expect(204);
      await make(http);
    } finally {
      await app.close();
    }

    app = await start();
    http = request(app.getHttpServer());
    try {
      // Not the window of the asset before it was removed: no prediction until a window of its own is full.
      assert.deepEqual(
        [(await post(http, 40, 41)).predictions, (await post(http, 41, 69)).predictions],
        [0, 0],
        "the old asset's window taken up",
      );
      assert.equal((await post(http, 69, 70)).predictions, 1);
    } finally {
      await app.close();
    }
  });

  it('an open alarm stream ends when the gateway shuts down, rather than holding the shutdown', async () => {
    const app = await createTestApp({ MODELS_DIR: modelsDir, DATA_DIR: await freshDataDir() });
    await app.listen(0, '127.0.0.1');
    const { port } = app.getHttpServer().address() as AddressInfo;
    const stream = alarmStream(port, operator);
    await stream.ready;
    let timer: NodeJS.Timeout | undefined;
    const stuck = new Promise<'stuck'>((done) => (timer = setTimeout(() => done('stuck'), 8000)));
    const closed = await Promise.race([app.close().then(() => 'closed' as const), stuck]);
    clearTimeout(timer);
    assert.equal(closed, 'closed', 'the close did not wait on the open stream');
    await stream.ended;
  });

  it('readings held for the late tolerance, acknowledged, are predicted after the gateway is killed', async () => {
    const { boot, ready, call } = killableGateway(modelsDir, await freshDataDir(), 3900 + (process.pid % 90), {
      MANUFACTURING_LATE_TOLERANCE_MS: '3000',
    });
    const stored = async () =>
      (
        (await call(
          'GET',
          `/v1/manufacturing/assets/mill-k/predictions?from=${iso(T0)}&to=${iso(T0 + 100_000)}`,
          operator,
        )) as { predictions: Array<{ at: string }> }
      ).predictions.map((p) => p.at);

    let child = boot();
    try {
      await ready(child);
      await call('PUT', '/v1/manufacturing/assets/mill-k', admin, millAsset('mill-k'));
      const rows = ai4iReadings(false, 3);
      const summary = await call('POST', '/v1/manufacturing/assets/mill-k/readings', scada, {
        readings: rows.map((values, i) => ({ timestamp: iso(T0 + i * 1000), values })),
      });
      assert.deepEqual([summary.accepted, summary.predictions], [3, 0], 'held: newer readings may still come');
      const gone = new Promise((done) => child.once('exit', done));
      child.kill('SIGKILL');
      await gone;

      child = boot();
      await ready(child);
      await until(
        'the held readings predicted',
        async () => ((await stored()).length === 3 ? true : undefined),
        30_000,
      );
      assert.deepEqual(await stored(), [iso(T0), iso(T0 + 1000), iso(T0 + 2000)]);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
