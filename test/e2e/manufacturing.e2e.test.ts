import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { alarmStream } from '../fixtures/alarm-stream';
import { bundledModelsDir } from '../fixtures/paths';
import {
  ai4iReadings,
  closedMillAlarm,
  cmapssEngine,
  DATASETS_SKIP,
  millAsset,
  turbofanAsset,
} from '../fixtures/plant-data';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';
import { freshDataDir } from '../fixtures/test-data-dir';
import { until } from '../fixtures/until';

const T0 = Date.parse('2026-11-23T00:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();

describe('manufacturing: assets, readings, predictions, alarms', { skip: DATASETS_SKIP }, () => {
  let app: NestFastifyApplication;
  let http: ReturnType<typeof request>;
  let modelsDir: string;
  const admin = bearer(tokenFor(['ml-admin']));
  const scada = bearer(tokenFor(['scada'], { sub: 'scada-1' }));
  const operator = bearer(tokenFor(['plant-operator']));
  before(async () => {
    modelsDir = bundledModelsDir(['manufacturing']);
    // Every dead letter kept (no budget): the tests of large refusals count them one by one.
    app = await createTestApp({ MODELS_DIR: modelsDir, MANUFACTURING_DEAD_LETTER_LIMIT: '0' });
    await app.listen(0, '127.0.0.1');
    http = request(app.getHttpServer());
  });
  after(async () => {
    await app.close();
    rmSync(modelsDir, { recursive: true, force: true });
  });

  it('registers assets, refusing a mapping that does not fit the model', async () => {
    const ok = await http
      .put('/v1/manufacturing/assets/engine-1')
      .set('Authorization', admin)
      .send(turbofanAsset('engine-1'));
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const mill = await http
      .put('/v1/manufacturing/assets/mill-1')
      .set('Authorization', admin)
      .send(millAsset('mill-1'));
    assert.equal(mill.status, 200, JSON.stringify(mill.body));
    const bad = millAsset('mill-2');
    (bad.sensors as Array<Record<string, string>>)[0].unit = 'psia';
    bad.constants = { Type: 'X' };
    const refused = await http.put('/v1/manufacturing/assets/mill-2').set('Authorization', admin).send(bad);
    assert.equal(refused.status, 400);
    const fields = (refused.body as { errors: Array<{ field: string }> }).errors.map((e) => e.field);
    assert.ok(fields.includes('sensors[0].unit') && fields.includes('constants.Type'), JSON.stringify(fields));
    const list = await http.get('/v1/manufacturing/assets').set('Authorization', operator);
    assert.deepEqual(
      (list.body as { assets: Array<{ assetId: string }> }).assets.map((a) => a.assetId),
      ['engine-1', 'mill-1'],
    );
    const forbidden = await http.put('/v1/manufacturing/assets/x').set('Authorization', operator).send(millAsset('x'));
    assert.equal(forbidden.status, 403);
  });

  it('refuses a query parameter on PUT and DELETE of an asset, naming it, and changes nothing', async () => {
    // As the GET routes do (no-query.e2e): `?force=true` or `?site=...` was ignored, the change made as if it applied.
    const site = [{ field: 'site', reason: 'is not an accepted field' }];
    const put = await http
      .put('/v1/manufacturing/assets/mill-q?site=plant-2')
      .set('Authorization', admin)
      .send(millAsset('mill-q'));
    assert.equal(put.status, 400, JSON.stringify(put.body));
    assert.match(String(put.headers['content-type']), /^application\/problem\+json/);
    assert.deepEqual(put.body.errors, site);
    await http.get('/v1/manufacturing/assets/mill-q').set('Authorization', operator).expect(404);

    await http.put('/v1/manufacturing/assets/mill-q').set('Authorization', admin).send(millAsset('mill-q')).expect(200);
    const del = await http.delete('/v1/manufacturing/assets/mill-q?force=true').set('Authorization', admin);
    assert.equal(del.status, 400, JSON.stringify(del.body));
    assert.match(String(del.headers['content-type']), /^application\/problem\+json/);
    assert.deepEqual(del.body.errors, [{ field: 'force', reason: 'is not an accepted field' }]);
    await http.get('/v1/manufacturing/assets/mill-q').set('Authorization', operator).expect(200);
    await http.delete('/v1/manufacturing/assets/mill-q').set('Authorization', admin).expect(204);
  });

  it('replays a real engine to failure: RUL falls, an alarm is raised and streamed', async () => {
    const port = (app.getHttpServer().address() as AddressInfo).port;
    const sse = alarmStream(port, operator);
    await sse.ready;
    const engine = cmapssEngine(1);
    const ruls: number[] = [];
    for (let i = 0; i < engine.length; i += 16) {
      const readings = engine.slice(i, i + 16).map((r) => ({ timestamp: iso(T0 + r.cycle * 1000), values: r.values }));
      const res = await http
        .post('/v1/manufacturing/assets/engine-1/readings')
        .set('Authorization', scada)
        .send({ readings });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const status = await http.get('/v1/manufacturing/assets/engine-1/status').set('Authorization', operator);
      const rul = (status.body as { latest?: { rul: number } }).latest?.rul;
      if (rul !== undefined) ruls.push(rul);
    }
    assert.ok(ruls.length > 5);
    assert.ok(ruls[0] > 90, `early RUL ${ruls[0]}`);
    assert.ok(ruls[ruls.length - 1] < 25, `final RUL ${ruls[ruls.length - 1]}`);
    const status = await http.get('/v1/manufacturing/assets/engine-1/status').set('Authorization', operator);
    const body = status.body as { alarm: { active: boolean }; counts: { accepted: number; predictions: number } };
    assert.equal(body.alarm.active, true);
    assert.equal(body.counts.accepted, engine.length);
    assert.equal(body.counts.predictions, engine.length - 29, 'one RUL per full 30-cycle window');
    const deadline = Date.now() + 5000;
    while (!sse.events.some((e) => e.assetId === 'engine-1') && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    sse.close();
    const raised = sse.events.find((e) => e.assetId === 'engine-1');
    assert.equal(raised?.state, 'raised');
    assert.equal(raised?.metric, 'rul');
    const predictions = await http
      .get(`/v1/manufacturing/assets/engine-1/predictions?from=${iso(T0)}&to=${iso(T0 + 1_000_000)}`)
      .set('Authorization', operator);
    type Page = { predictions: Array<{ at: string; value: number }>; nextCursor: string | null };
    const all = predictions.body as Page;
    assert.equal(all.predictions.length, engine.length - 29);
    assert.equal(all.nextCursor, null);
    // Paged: every prediction once, in order, and the last page says so (the cap used to cut silently).
    const paged: Page['predictions'] = [];
    let cursor: string | null = '';
    let pages = 0;
    while (cursor !== null) {
      const range = `from=${iso(T0)}&to=${iso(T0 + 1_000_000)}&limit=50${cursor ? `&cursor=${cursor}` : ''}`;
      const page = (
        await http
          .get(`/v1/manufacturing/assets/engine-1/predictions?${range}`)
          .set('Authorization', operator)
          .expect(200)
      ).body as Page;
      assert.ok(page.predictions.length <= 50);
      paged.push(...page.predictions);
      cursor = page.nextCursor;
      pages++;
    }
    assert.deepEqual(paged, all.predictions);
    assert.equal(pages, Math.ceil(all.predictions.length / 50));
    for (const bad of ['cursor=x', 'cursor=1', 'cursor=9999999999999999.1', 'limit=0', 'limit=10001', 'limit=2.5']) {
      const res = await http.get(`/v1/manufacturing/assets/engine-1/predictions?${bad}`).set('Authorization', operator);
      assert.equal(res.status, 400, `${bad}: ${res.text}`);
    }
    const alarms = await http.get('/v1/manufacturing/alarms?assetId=engine-1').set('Authorization', operator);
    assert.equal((alarms.body as { alarms: Array<{ state: string }> }).alarms[0].state, 'raised');
  });

  it('scores a mill per reading (units converted): failure rows raise an alarm, normal rows clear it', async () => {
    const normal = ai4iReadings(false, 6);
    const failed = ai4iReadings(true, 40);
    let t = T0;
    const post = (rows: Array<Record<string, number>>) =>
      http
        .post('/v1/manufacturing/assets/mill-1/readings')
        .set('Authorization', scada)
        .send({ readings: rows.map((values) => ({ timestamp: iso((t += 1000)), values })) });
    const first = await post(normal);
    assert.equal((first.body as { predictions: number }).predictions, 6);
    let status = await http.get('/v1/manufacturing/assets/mill-1/status').set('Authorization', operator);
    assert.ok((status.body as { latest: { failureProbability: number } }).latest.failureProbability < 0.3);
    await post(failed);
    status = await http.get('/v1/manufacturing/assets/mill-1/status').set('Authorization', operator);
    assert.equal((status.body as { alarm: { active: boolean } }).alarm.active, true, 'failure rows raise the alarm');
    assert.ok('TWF' in (status.body as { latest: { modes: Record<string, number> } }).latest.modes);
    await post(ai4iReadings(false, 30).slice(10));
    status = await http.get('/v1/manufacturing/assets/mill-1/status').set('Authorization', operator);
    assert.equal((status.body as { alarm: { active: boolean } }).alarm.active, false, 'normal rows clear it');
  });

  it('refuses bad values, drops duplicates and late readings, and keeps the refused in the dead-letter table', async () => {
    const good = ai4iReadings(false, 1)[0];
    const late = T0 - 10_000_000;
    const res = await http
      .post('/v1/manufacturing/assets/mill-1/readings')
      .set('Authorization', scada)
      .send({
        readings: [
          { timestamp: iso(T0 + 5_000_000), values: good },
          { timestamp: iso(T0 + 5_000_000), values: good },
          { timestamp: iso(late), values: good },
          { timestamp: iso(T0 + 5_001_000), values: { ...good, torque: 'high' } },
          { timestamp: iso(T0 + 5_002_000), values: { ...good, air_temp: -400 } },
        ],
      });
    assert.equal(res.status, 200);
    const body = res.body as {
      accepted: number;
      duplicates: number;
      late: number;
      invalid: Array<{ index: number; reason: string }>;
    };
    assert.equal(body.accepted, 1);
    assert.equal(body.duplicates, 1);
    assert.equal(body.late, 1);
    assert.deepEqual(
      body.invalid.map((i) => i.index),
      [3, 4],
    );
    assert.match(body.invalid[0].reason, /torque/);
    // -400 degC, below absolute zero: named as sent, and in kelvin without binary noise (-126.85000000000002).
    assert.match(
      body.invalid[1].reason,
      /^Air temperature \[K\]: -400 degC \(-126\.85 K\) is outside the plausible range/,
    );
    const dead = await http.get('/v1/manufacturing/dead-letters').set('Authorization', operator);
    const reasons = (dead.body as { deadLetters: Array<{ reason: string; assetId: string }> }).deadLetters.map(
      (d) => d.reason,
    );
    assert.deepEqual(reasons.sort(), ['invalid-value', 'invalid-value', 'late']);
    const object = await http
      .post('/v1/manufacturing/assets/mill-1/readings')
      .set('Authorization', scada)
      .send({ readings: [{ timestamp: iso(T0 + 5_003_000), values: { ...good, torque: {} } }] })
      .expect(200);
    assert.equal(object.body.invalid[0].reason, 'torque: an object is not a number');
    const nan = await http
      .post('/v1/manufacturing/assets/mill-1/readings')
      .set('Authorization', scada)
      .send({ readings: [{ timestamp: 'yesterday', values: good }] });
    assert.equal(nan.status, 400);
    const unknown = await http
      .post('/v1/manufacturing/assets/nope/readings')
      .set('Authorization', scada)
      .send({ readings: [{ timestamp: iso(T0), values: good }] });
    assert.equal(unknown.status, 404);
  });

  it('takes a null tag value as no value (the tag keeps its last value); refuses a reading with none, and a null timestamp or values naming the field', async () => {
    const good = ai4iReadings(false, 1)[0];
    const post = (readings: unknown[]) =>
      http.post('/v1/manufacturing/assets/mill-1/readings').set('Authorization', scada).send({ readings });
    const taken = await post([
      { timestamp: iso(T0 + 5_009_000), values: good },
      { timestamp: iso(T0 + 5_010_000), values: { ...good, torque: null } },
    ]).expect(200);
    assert.deepEqual([taken.body.accepted, taken.body.invalid], [2, []]);
    const nulls = Object.fromEntries(Object.keys(good).map((tag) => [tag, null]));
    const none = await post([{ timestamp: iso(T0 + 5_011_000), values: nulls }]).expect(200);
    assert.equal(none.body.accepted, 0);
    assert.match(
      none.body.invalid[0].reason,
      /^no usable value: .*torque.* are null \(no value\); none of the asset's other tags has a usable value \(its tags: /,
    );
    for (const field of ['timestamp', 'values']) {
      const res = await post([{ timestamp: iso(T0 + 5_012_000), values: good, [field]: null }]).expect(400);
      const fields = (res.body as { errors: Array<{ field: string }> }).errors.map((e) => e.field);
      assert.deepEqual(fields, [`readings[0].${field}`], JSON.stringify(res.body));
    }
  });

  it('pages alarms (cursor / nextCursor), of all assets or of one; only the newest 1,000 could be read', async () => {
    // 1,500 old alarm rows of an asset of their own, written straight into the table.
    await app.get(DataSource).query(
      `INSERT INTO manufacturing_alarms (asset_id, state, metric, value, threshold, at)
       SELECT 'mill-paged', CASE WHEN n % 2 = 0 THEN 'raised' ELSE 'cleared' END, 'failure', 0.9, 0.5,
              timestamptz '2026-01-01T00:00:00Z' + n * interval '1 minute'
       FROM generate_series(1, 1500) AS n`,
    );
    type Page = { alarms: Array<{ id: string; assetId: string }>; nextCursor: string | null };
    const read = async (query: string): Promise<Page['alarms']> => {
      const rows: Page['alarms'] = [];
      let cursor: string | null = '';
      while (cursor !== null) {
        const page = (
          await http
            .get(`/v1/manufacturing/alarms?${query}${cursor ? `&cursor=${cursor}` : ''}`)
            .set('Authorization', operator)
            .expect(200)
        ).body as Page;
        assert.ok(page.alarms.length <= 1000);
        rows.push(...page.alarms);
        cursor = page.nextCursor;
      }
      return rows;
    };
    const paged = (await read('assetId=mill-paged')).map((a) => Number(a.id));
    assert.equal(paged.length, 1500);
    assert.deepEqual(
      paged,
      [...paged].sort((a, b) => b - a),
      'newest first, no row twice',
    );
    assert.equal(new Set(paged).size, 1500);
    const all = await read('');
    const [{ count }] = await app.get(DataSource).query('SELECT count(*)::int AS count FROM manufacturing_alarms');
    assert.equal(all.length, count);
    for (const bad of ['0', 'x', '99999999999999999999']) {
      await http.get(`/v1/manufacturing/alarms?cursor=${bad}`).set('Authorization', operator).expect(400);
    }
  });

  it('an engine whose alarm thresholds are tuned (PUT, same kind) keeps its window: the next cycle is predicted, cycles sent again are duplicates', async () => {
    const cycles = cmapssEngine(2);
    const cycle = (i: number) => ({ timestamp: iso(T0 + i * 1000), values: cycles[i].values });
    const post = (readings: unknown[]) =>
      http
        .post('/v1/manufacturing/assets/engine-put/readings')
        .set('Authorization', scada)
        .send({ readings })
        .expect(200)
        .then((res) => res.body as { accepted: number; duplicates: number; late: number; predictions: number });
    await http.put('/v1/manufacturing/assets/engine-put').set('Authorization', admin).send(turbofanAsset('engine-put'));
    assert.equal((await post(Array.from({ length: 35 }, (_, i) => cycle(i)))).predictions, 6);
    const tuned = turbofanAsset('engine-put', { raiseAt: 30, clearAt: 50, consecutive: 2 });
    await http.put('/v1/manufacturing/assets/engine-put').set('Authorization', admin).send(tuned).expect(200);
    const next = await post([cycle(34), cycle(20), cycle(35)]);
    assert.deepEqual([next.accepted, next.duplicates, next.late, next.predictions], [1, 2, 0, 1]);
  });

  /** The alarms of an asset as listed, newest first. */
  const alarmsOf = async (assetId: string) =>
    (await http.get(`/v1/manufacturing/alarms?assetId=${assetId}`).set('Authorization', operator).expect(200)).body
      .alarms as Array<Record<string, unknown>>;
  /** The audit rows of the alarms cleared for an asset, newest first. */
  const auditedClears = async (assetId: string) =>
    (
      (
        await http
          .get('/v1/audit/events?action=manufacturing.alarm-cleared')
          .set('Authorization', bearer(tokenFor(['auditor'])))
          .expect(200)
      ).body.events as Array<{ outputSummary: Record<string, unknown> }>
    )
      .map((e) => e.outputSummary)
      .filter((o) => o.assetId === assetId);
  /** Puts a mill, and sends it failing readings until its failure alarm is raised. */
  const raiseMillAlarm = async (assetId: string) => {
    await http
      .put(`/v1/manufacturing/assets/${assetId}`)
      .set('Authorization', admin)
      .send(millAsset(assetId))
      .expect(200);
    await http
      .post(`/v1/manufacturing/assets/${assetId}/readings`)
      .set('Authorization', scada)
      .send({ readings: ai4iReadings(true, 40).map((values, i) => ({ timestamp: iso(T0 + (i + 1) * 1000), values })) })
      .expect(200);
    const status = await http.get(`/v1/manufacturing/assets/${assetId}/status`).set('Authorization', operator);
    assert.equal(status.body.alarm.active, true, 'failure rows raise the mill alarm');
  };
  const withoutTime = ({ at, id, ...rest }: Record<string, unknown>) => (assert.ok(at), void id, rest);

  it("an asset put as another kind closes its old model's raised alarm, with the reason, listed, audited and streamed; the new model starts clean", async () => {
    const port = (app.getHttpServer().address() as AddressInfo).port;
    await raiseMillAlarm('mill-kind');
    const sse = alarmStream(port, operator);
    await sse.ready;
    const engine = { ...turbofanAsset('mill-kind'), site: 'plant-1', line: 'line-b' };
    await http.put('/v1/manufacturing/assets/mill-kind').set('Authorization', admin).send(engine).expect(200);
    // Answered once the alarm is closed: listed, audited and streamed at once.
    const [closed, raised] = await alarmsOf('mill-kind');
    assert.deepEqual(withoutTime(closed), closedMillAlarm('mill-kind', 'asset-kind-changed'));
    assert.equal(raised.state, 'raised');
    const [audited] = await auditedClears('mill-kind');
    assert.deepEqual(withoutTime(audited), closedMillAlarm('mill-kind', 'asset-kind-changed'));
    await until('the cleared alarm on the stream', () => sse.events.find((e) => e.assetId === 'mill-kind'));
    sse.close();
    assert.deepEqual(sse.events.filter((e) => e.assetId === 'mill-kind').map(withoutTime), [
      closedMillAlarm('mill-kind', 'asset-kind-changed'),
    ]);

    const status = async () =>
      (await http.get('/v1/manufacturing/assets/mill-kind/status').set('Authorization', operator).expect(200)).body as {
        kind: string;
        alarm: { active: boolean; since?: string };
      };
    assert.equal((await status()).kind, 'turbofan-rul');
    assert.deepEqual((await status()).alarm, { active: false }, "the failure alarm is not the RUL model's");
    // A healthy engine's first cycles: its RUL is high, and no alarm of its model is raised or cleared.
    let t = T0 + 100_000;
    await http
      .post('/v1/manufacturing/assets/mill-kind/readings')
      .set('Authorization', scada)
      .send({
        readings: cmapssEngine(1)
          .slice(0, 35)
          .map((c) => ({ timestamp: iso((t += 1000)), values: c.values })),
      })
      .expect(200);
    assert.deepEqual((await status()).alarm, { active: false });
    const after = await alarmsOf('mill-kind');
    assert.deepEqual(
      withoutTime(after[0]),
      closedMillAlarm('mill-kind', 'asset-kind-changed'),
      'closed once, still the newest',
    );
    assert.deepEqual(
      after.filter((a) => a.metric !== 'failure' || a.reason !== undefined).length,
      1,
      'no RUL alarm cleared that the RUL model never raised',
    );
  });

  it("a removed asset's raised alarm is closed (asset-removed), listed, audited and streamed; put again, it starts clean", async () => {
    const port = (app.getHttpServer().address() as AddressInfo).port;
    await raiseMillAlarm('mill-gone');
    const sse = alarmStream(port, operator);
    await sse.ready;
    await http.delete('/v1/manufacturing/assets/mill-gone').set('Authorization', admin).expect(204);
    const listed = await alarmsOf('mill-gone');
    const [closed] = listed;
    assert.deepEqual(withoutTime(closed), closedMillAlarm('mill-gone', 'asset-removed'));
    const [audited] = await auditedClears('mill-gone');
    assert.deepEqual(withoutTime(audited), closedMillAlarm('mill-gone', 'asset-removed'));
    await until('the cleared alarm on the stream', () => sse.events.find((e) => e.assetId === 'mill-gone'));
    sse.close();
    assert.deepEqual(
      withoutTime(sse.events.find((e) => e.assetId === 'mill-gone')!),
      closedMillAlarm('mill-gone', 'asset-removed'),
    );
    // Put again as the kind that raised it: not raised again by the alarm of the asset removed.
    await http
      .put('/v1/manufacturing/assets/mill-gone')
      .set('Authorization', admin)
      .send(millAsset('mill-gone'))
      .expect(200);
    const status = await http.get('/v1/manufacturing/assets/mill-gone/status').set('Authorization', operator);
    assert.deepEqual(status.body.alarm, { active: false });
    assert.equal((await alarmsOf('mill-gone')).length, listed.length, 'closed once');
  });

  it("an asset removed and made again that sends readings at the old asset's times has its own predictions stored there, not the old asset's", async () => {
    const post = (assetId: string, rows: Array<Record<string, number>>) =>
      http
        .post(`/v1/manufacturing/assets/${assetId}/readings`)
        .set('Authorization', scada)
        .send({ readings: rows.map((values, i) => ({ timestamp: iso(T0 + 500_000 + i * 1000), values })) })
        .expect(200);
    const predicted = async (assetId: string) => {
      const res = await http
        .get(`/v1/manufacturing/assets/${assetId}/predictions?from=${iso(T0)}&to=${iso(T0 + 1_000_000)}`)
        .set('Authorization', operator)
        .expect(200);
      const { predictions } = res.body as { predictions: Array<{ at: string; value: number; modes: unknown }> };
      return predictions.map((p) => [p.at, p.value, p.modes]);
    };
    const put = (assetId: string) =>
      http.put(`/v1/manufacturing/assets/${assetId}`).set('Authorization', admin).send(millAsset(assetId)).expect(200);
    await put('mill-re');
    await put('mill-re-ref');
    await post('mill-re', ai4iReadings(false, 3));
    await http.delete('/v1/manufacturing/assets/mill-re').set('Authorization', admin).expect(204);
    await put('mill-re');
    // The same times again (a history replayed into the asset made again), other values.
    const again = await post('mill-re', ai4iReadings(true, 3));
    assert.equal(again.body.predictions, 3);
    await post('mill-re-ref', ai4iReadings(true, 3));
    const reference = await predicted('mill-re-ref');
    assert.equal(reference.length, 3);
    assert.deepEqual(await predicted('mill-re'), reference, "the old asset's predictions kept");
  });

  it("an asset removed and made again lists its own predictions only, page by page; the removed asset's stay stored", async () => {
    const post = (from: number, rows: Array<Record<string, number>>) =>
      http
        .post('/v1/manufacturing/assets/mill-anew/readings')
        .set('Authorization', scada)
        .send({ readings: rows.map((values, i) => ({ timestamp: iso(from + i * 1000), values })) })
        .expect(200);
    const listed = async (query = '') => {
      const res = await http
        .get(`/v1/manufacturing/assets/mill-anew/predictions?from=${iso(T0)}&to=${iso(T0 + 1_000_000)}${query}`)
        .set('Authorization', operator)
        .expect(200);
      return res.body as { predictions: Array<{ at: string }>; nextCursor: string | null };
    };
    const put = () =>
      http
        .put('/v1/manufacturing/assets/mill-anew')
        .set('Authorization', admin)
        .send(millAsset('mill-anew'))
        .expect(200);
    await put();
    // The removed machine's history: three readings, the last of them after all of the new one's.
    await post(T0 + 600_000, ai4iReadings(false, 2));
    await post(T0 + 900_000, ai4iReadings(false, 1));
    assert.equal((await listed()).predictions.length, 3);
    await http.delete('/v1/manufacturing/assets/mill-anew').set('Authorization', admin).expect(204);
    await put();
    await post(T0 + 700_000, ai4iReadings(true, 2));
    const mine = [iso(T0 + 700_000), iso(T0 + 701_000)];
    assert.deepEqual(
      (await listed()).predictions.map((p) => p.at),
      mine,
      "the removed asset's predictions listed as the new one's",
    );
    const first = await listed('&limit=1');
    assert.deepEqual(
      first.predictions.map((p) => p.at),
      [mine[0]],
    );
    const second = await listed(`&limit=1&cursor=${first.nextCursor}`);
    assert.deepEqual(
      second.predictions.map((p) => p.at),
      [mine[1]],
    );
    assert.equal(second.nextCursor, null, "no page more for the removed asset's last prediction");
    const [{ n }] = await app
      .get(DataSource)
      .query<Array<{ n: number }>>(
        "SELECT count(*)::int AS n FROM manufacturing_predictions WHERE asset_id = 'mill-anew'",
      );
    assert.equal(n, 5, "the removed asset's rows are kept (until the retention purge)");
  });

  it("refuses a reading stamped far ahead of the gateway's clock, so it cannot make every later reading late", async () => {
    const good = ai4iReadings(false, 1)[0];
    const future = await http
      .post('/v1/manufacturing/assets/mill-1/readings')
      .set('Authorization', scada)
      .send({ readings: [{ timestamp: '9999-12-31T00:00:00Z', values: good }] })
      .expect(200);
    assert.equal(future.body.accepted, 0);
    assert.match(future.body.invalid[0].reason, /more than 300000 ms ahead of the gateway's clock/);
    // A reading stamped now is still taken: the refused one did not become the asset's newest.
    const now = await http
      .post('/v1/manufacturing/assets/mill-1/readings')
      .set('Authorization', scada)
      .send({ readings: [{ timestamp: new Date().toISOString(), values: good }] })
      .expect(200);
    assert.equal(now.body.accepted, 1, JSON.stringify(now.body));
  });

  it('refuses a tag named after a member of Object.prototype, which no reading over HTTP could carry', async () => {
    const asset = millAsset('mill-tags');
    const sensors = asset.sensors as Array<Record<string, string>>;
    // The body's transformer drops such keys from `values`, and a reading without the tag found Object.prototype's
    // member in its place: every reading of the asset was refused as "toString: a function is not a number".
    // `prototype` too: Nest's pipe deletes it from every body, so its readings' values were lost without a word.
    for (const tag of ['constructor', '__proto__', 'prototype', 'toString', 'valueOf', 'hasOwnProperty']) {
      sensors[0].tag = tag;
      const refused = await http.put('/v1/manufacturing/assets/mill-tags').set('Authorization', admin).send(asset);
      assert.equal(refused.status, 400, `${tag}: ${JSON.stringify(refused.body)}`);
      assert.deepEqual(
        (refused.body as { errors: Array<{ field: string }> }).errors.map((e) => e.field),
        ['sensors[0].tag'],
      );
    }
    sensors[0].tag = 'to_string';
    await http.put('/v1/manufacturing/assets/mill-tags').set('Authorization', admin).send(asset).expect(200);
  });

  it('refuses a constant named after a member of Object.prototype, as any constant the model does not take', async () => {
    // The body's transformer dropped such keys from `constants` before the registry's check saw them: 200.
    for (const key of ['toString', 'constructor', 'prototype', 'valueOf', 'hasOwnProperty']) {
      const asset = { ...millAsset('mill-consts'), constants: { Type: 'L', [key]: 'x' } };
      const refused = await http.put('/v1/manufacturing/assets/mill-consts').set('Authorization', admin).send(asset);
      assert.equal(refused.status, 400, `${key}: ${JSON.stringify(refused.body)}`);
      const errors = (refused.body as { errors: Array<{ field: string; reason: string }> }).errors;
      assert.deepEqual(
        errors.map((e) => e.field),
        [`constants.${key}`],
      );
      assert.match(errors[0].reason, /not a constant input of machine-failure \(it takes: Type\)/);
    }
    await http.get('/v1/manufacturing/assets/mill-consts').set('Authorization', operator).expect(404);
  });

  it("refuses alarm thresholds outside the range of the model's output, where the alarm could never move", async () => {
    // A failure probability is in [0, 1] and the RUL model's output in [0, 125] cycles (their manifests).
    const cases: Array<[Record<string, unknown>, string[], RegExp]> = [
      [millAsset('mill-th', { raiseAt: 5, clearAt: 0.3, consecutive: 2 }), ['alarm.raiseAt'], /\[0, 1\]/],
      [millAsset('mill-th', { raiseAt: 0.5, clearAt: -0.5, consecutive: 2 }), ['alarm.clearAt'], /\[0, 1\]/],
      [turbofanAsset('engine-th', { raiseAt: -1, clearAt: 60, consecutive: 3 }), ['alarm.raiseAt'], /\[0, 125\]/],
      [turbofanAsset('engine-th', { raiseAt: 40, clearAt: 200, consecutive: 3 }), ['alarm.clearAt'], /\[0, 125\]/],
    ];
    for (const [asset, fields, range] of cases) {
      const res = await http
        .put(`/v1/manufacturing/assets/${String(asset.assetId)}`)
        .set('Authorization', admin)
        .send(asset);
      assert.equal(res.status, 400, JSON.stringify(asset.alarm));
      const errors = (res.body as { errors: Array<{ field: string; reason: string }> }).errors;
      assert.deepEqual(
        errors.map((e) => e.field),
        fields,
      );
      assert.match(errors[0].reason, range);
    }
    // The bounds themselves are in reach (a clearAt of 0 latches a failure alarm: it is never cleared).
    await http
      .put('/v1/manufacturing/assets/mill-th')
      .set('Authorization', admin)
      .send(millAsset('mill-th', { raiseAt: 1, clearAt: 0, consecutive: 2 }))
      .expect(200);
  });

  it('says a missing readings, sensors or alarm is required, not that it holds too many or too few', async () => {
    const refusal = (res: { status: number; body: unknown }) => {
      assert.equal(res.status, 400, JSON.stringify(res.body));
      return (res.body as { errors: Array<{ field: string; reason: string }> }).errors;
    };
    const post = (body: unknown) =>
      http
        .post('/v1/manufacturing/assets/mill-1/readings')
        .set('Authorization', scada)
        .send(body as object);
    assert.deepEqual(refusal(await post({})), [{ field: 'readings', reason: 'is required' }]);
    const notArray = refusal(await post({ readings: 'x' }));
    assert.ok(
      notArray.some((e) => e.field === 'readings' && e.reason === 'must be a list'),
      JSON.stringify(notArray),
    );
    assert.deepEqual(refusal(await post({ readings: [] })), [
      { field: 'readings', reason: 'must hold 1 to 10000 items, not 0' },
    ]);
    for (const field of ['sensors', 'alarm']) {
      const asset = millAsset('mill-missing');
      delete asset[field];
      const res = await http.put('/v1/manufacturing/assets/mill-missing').set('Authorization', admin).send(asset);
      assert.deepEqual(refusal(res), [{ field, reason: 'is required' }]);
    }
  });

  it('refuses an unknown query parameter on every manufacturing query, as predictions always did', async () => {
    for (const path of [
      '/v1/manufacturing/alarms?foo=1',
      '/v1/manufacturing/alarms?assetId=mill-1&foo=1',
      '/v1/manufacturing/dead-letters?foo=1',
      '/v1/manufacturing/assets/mill-1/predictions?foo=1',
    ]) {
      const res = await http.get(path).set('Authorization', operator);
      assert.equal(res.status, 400, `${path}: ${res.text}`);
      assert.deepEqual(
        (res.body as { errors: Array<{ field: string }> }).errors.map((e) => e.field),
        ['foo'],
        path,
      );
    }
    await http.get('/v1/manufacturing/alarms?assetId=mill-1').set('Authorization', operator).expect(200);
  });

  it('pages the dead letters, so the older ones can be read when more than a page were refused', async () => {
    const start = Date.now() - 600_000;
    const readings = Array.from({ length: 1500 }, (_, i) => ({ timestamp: iso(start + i), values: { torque: 'x' } }));
    const res = await http
      .post('/v1/manufacturing/assets/mill-1/readings')
      .set('Authorization', scada)
      .send({ readings })
      .expect(200);
    assert.equal(res.body.invalid.length, 1500);
    type Page = { deadLetters: Array<{ id: string; payload: string }>; nextCursor: string | null };
    const first = (await http.get('/v1/manufacturing/dead-letters').set('Authorization', operator).expect(200))
      .body as Page;
    assert.equal(first.deadLetters.length, 1000);
    assert.equal(typeof first.nextCursor, 'string', 'only the newest 1,000 could be read');
    const second = (
      await http
        .get(`/v1/manufacturing/dead-letters?cursor=${first.nextCursor}`)
        .set('Authorization', operator)
        .expect(200)
    ).body as Page;
    const ids = new Set([...first.deadLetters, ...second.deadLetters].map((d) => d.id));
    const torque = [...first.deadLetters, ...second.deadLetters].filter((d) => d.payload.includes('"torque":"x"'));
    assert.equal(torque.length, 1500, 'every refused reading on one page or the other');
    assert.equal(ids.size, first.deadLetters.length + second.deadLetters.length, 'no row on both pages');
    assert.equal(second.nextCursor, null);
    for (const bad of ['0', '-1', 'x', '99999999999999999999', '1&cursor=2']) {
      await http.get(`/v1/manufacturing/dead-letters?cursor=${bad}`).set('Authorization', operator).expect(400);
    }
  });
});

describe('manufacturing: the MANUFACTURING_ASSETS_FILE seed', () => {
  let modelsDir: string;
  let dir: string;
  before(() => {
    modelsDir = bundledModelsDir(['manufacturing']);
    dir = mkdtempSync(join(tmpdir(), 'assets-seed-'));
  });
  after(() => {
    rmSync(modelsDir, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  });

  it('upserts the assets of the file at boot', async () => {
    const file = join(dir, 'ok.json');
    writeFileSync(file, JSON.stringify([millAsset('mill-seeded')]));
    const app = await createTestApp({ MODELS_DIR: modelsDir, MANUFACTURING_ASSETS_FILE: file });
    try {
      const list = await request(app.getHttpServer())
        .get('/v1/manufacturing/assets')
        .set('Authorization', bearer(tokenFor(['plant-operator'])))
        .expect(200);
      assert.deepEqual(
        (list.body as { assets: Array<{ assetId: string }> }).assets.map((a) => a.assetId),
        ['mill-seeded'],
      );
    } finally {
      await app.close();
    }
  });

  it('closes at boot the raised alarm of a mill the file put as an engine while the gateway was down', async () => {
    const dataDir = await freshDataDir();
    const operator = bearer(tokenFor(['plant-operator']));
    const alarms = async (app: NestFastifyApplication) =>
      (
        await request(app.getHttpServer())
          .get('/v1/manufacturing/alarms?assetId=mill-reseeded')
          .set('Authorization', operator)
          .expect(200)
      ).body.alarms as Array<Record<string, unknown>>;
    const before = await createTestApp({ MODELS_DIR: modelsDir, DATA_DIR: dataDir });
    let listed: Array<Record<string, unknown>>;
    try {
      const http = request(before.getHttpServer());
      await http
        .put('/v1/manufacturing/assets/mill-reseeded')
        .set('Authorization', bearer(tokenFor(['ml-admin'])))
        .send(millAsset('mill-reseeded'))
        .expect(200);
      await http
        .post('/v1/manufacturing/assets/mill-reseeded/readings')
        .set('Authorization', bearer(tokenFor(['scada'])))
        .send({
          readings: ai4iReadings(true, 40).map((values, i) => ({ timestamp: iso(T0 + (i + 1) * 1000), values })),
        })
        .expect(200);
      const status = await http.get('/v1/manufacturing/assets/mill-reseeded/status').set('Authorization', operator);
      assert.equal(status.body.alarm.active, true, 'failure rows raise the mill alarm');
      listed = await alarms(before);
    } finally {
      await before.close();
    }
    const file = join(dir, 'reseeded.json');
    writeFileSync(file, JSON.stringify([{ ...turbofanAsset('mill-reseeded'), site: 'plant-1', line: 'line-b' }]));
    const app = await createTestApp({ MODELS_DIR: modelsDir, DATA_DIR: dataDir, MANUFACTURING_ASSETS_FILE: file });
    try {
      const [closed, ...older] = await until('the alarm closed at boot', async () => {
        const now = await alarms(app);
        return now.length > listed.length ? now : undefined;
      });
      assert.deepEqual(older, listed);
      const { at, id, ...rest } = closed;
      assert.ok(typeof at === 'string' && typeof id === 'string');
      assert.deepEqual(rest, closedMillAlarm('mill-reseeded', 'asset-kind-changed'));
    } finally {
      await app.close();
    }
  });

  it('a file it cannot read or parse, or an asset that does not fit its model, stops the boot naming the variable', async () => {
    const unfit = millAsset('mill-unfit');
    (unfit.sensors as Array<Record<string, string>>)[0].unit = 'psia';
    writeFileSync(join(dir, 'unfit.json'), JSON.stringify([millAsset('mill-ok'), unfit]));
    writeFileSync(join(dir, 'broken.json'), '[{"assetId": ');
    // The API's own rules: a constant named after an Object.prototype member (class-transformer dropped it in silence
    // when the seed validated on its own), an unknown field.
    const mill = millAsset('mill-proto');
    const prototypeNamed = { ...mill, constants: { ...(mill.constants as object), toString: 1 } };
    writeFileSync(join(dir, 'proto.json'), JSON.stringify([prototypeNamed]));
    writeFileSync(join(dir, 'unknown.json'), JSON.stringify([{ ...millAsset('mill-extra'), colour: 'red' }]));
    const cases: Array<[string, RegExp]> = [
      [
        join(dir, 'proto.json'),
        /^MANUFACTURING_ASSETS_FILE .*proto\.json\[0\]: asset mill-proto does not fit .*\(constants\.toString: not a constant input/,
      ],
      [join(dir, 'unknown.json'), /^MANUFACTURING_ASSETS_FILE .*unknown\.json\[0\]: colour: is not an accepted field$/],
      [join(dir, 'missing.json'), /^MANUFACTURING_ASSETS_FILE .*missing\.json: ENOENT/],
      [join(dir, 'broken.json'), /^MANUFACTURING_ASSETS_FILE .*broken\.json: .*JSON/],
      [
        join(dir, 'unfit.json'),
        /^MANUFACTURING_ASSETS_FILE .*unfit\.json\[1\]: asset mill-unfit does not fit .*sensors\[0\]\.unit/,
      ],
    ];
    for (const [file, message] of cases) {
      await assert.rejects(
        createTestApp({ MODELS_DIR: modelsDir, MANUFACTURING_ASSETS_FILE: file }),
        (error: Error) => {
          assert.match(error.message, message);
          return true;
        },
      );
    }
  });
});
