import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { AppError } from '../../src/common/errors/app-error';
import { AssetRegistry } from '../../src/domains/manufacturing/assets/asset-registry.service';
import { MAX_INFERENCE_FAILURES, PlantStream } from '../../src/domains/manufacturing/plant-stream.service';
import { PlantRecordsRepository } from '../../src/domains/manufacturing/records/plant-records.repository';
import { InferenceEngine } from '../../src/runtime/inference-engine.service';
import { bundledModelsDir } from '../fixtures/paths';
import { ai4iReadings, DATASETS_SKIP, millAsset } from '../fixtures/plant-data';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';
import { freshDataDir } from '../fixtures/test-data-dir';
import { until } from '../fixtures/until';

const T0 = Date.parse('2026-11-23T00:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();
const admin = bearer(tokenFor(['ml-admin']));
const scada = bearer(tokenFor(['scada'], { sub: 'scada-1' }));
const operator = bearer(tokenFor(['plant-operator']));
/** Raised after two failure rows, and (clearAt 0) never cleared: each alarm row the tests see is one raise. */
const LATCHING = { raiseAt: 0.5, clearAt: 0, consecutive: 2 };

type Http = ReturnType<typeof request>;

function post(http: Http, assetId: string, from: number, rows: Array<Record<string, number>>) {
  return http
    .post(`/v1/manufacturing/assets/${assetId}/readings`)
    .set('Authorization', scada)
    .send({ readings: rows.map((values, i) => ({ timestamp: iso(from + i * 1000), values })) });
}

async function predictionTimes(http: Http, assetId: string): Promise<string[]> {
  const res = await http
    .get(`/v1/manufacturing/assets/${assetId}/predictions?from=${iso(T0 - 1000)}&to=${iso(T0 + 10_000_000)}`)
    .set('Authorization', operator)
    .expect(200);
  return (res.body as { predictions: Array<{ at: string }> }).predictions.map((p) => p.at);
}

/** gateway_manufacturing_dead_letters_total for a reason, 0 before its first. */
/** An asset's dead letters as the API lists them. */
async function deadLettersOf(http: Http, assetId: string): Promise<Array<Record<string, string>>> {
  const res = await http.get('/v1/manufacturing/dead-letters').set('Authorization', operator).expect(200);
  return (res.body as { deadLetters: Array<Record<string, string>> }).deadLetters.filter((d) => d.assetId === assetId);
}

async function deadLettersCounted(http: Http, reason: string): Promise<number> {
  const res = await http
    .get('/metrics')
    .set('Authorization', bearer(tokenFor(['monitoring'])))
    .expect(200);
  const line = new RegExp(`^gateway_manufacturing_dead_letters_total\\{reason="${reason}"\\} (\\d+)`, 'm');
  return Number(res.text.match(line)?.[1] ?? 0);
}

async function alarmStates(http: Http, assetId: string): Promise<string[]> {
  const res = await http.get(`/v1/manufacturing/alarms?assetId=${assetId}`).set('Authorization', operator).expect(200);
  return (res.body as { alarms: Array<{ state: string }> }).alarms.map((a) => a.state).reverse();
}

describe('manufacturing: accepted readings are predicted even when something fails', { skip: DATASETS_SKIP }, () => {
  let app: NestFastifyApplication;
  let http: Http;
  let modelsDir: string;
  before(async () => {
    modelsDir = bundledModelsDir(['manufacturing']);
    app = await createTestApp({ MODELS_DIR: modelsDir });
    http = request(app.getHttpServer());
    for (const id of ['mill-q', 'mill-a', 'mill-c', 'mill-p', 'mill-w']) {
      await http
        .put(`/v1/manufacturing/assets/${id}`)
        .set('Authorization', admin)
        .send(millAsset(id, LATCHING))
        .expect(200);
    }
  });
  after(async () => {
    await app.close();
    rmSync(modelsDir, { recursive: true, force: true });
  });

  it('a refused inference answers 503 and keeps the readings: predicted later, and a retry finds them duplicates', async () => {
    const engine = app.get(InferenceEngine);
    const infer = engine.infer.bind(engine);
    let refusals = 0;
    engine.infer = (...args: Parameters<InferenceEngine['infer']>) => {
      if (refusals++ === 0) {
        return Promise.reject(new AppError('QUEUE_FULL', 'the queue is full', { retryAfterSeconds: 1 }));
      }
      return infer(...args);
    };
    try {
      const rows = ai4iReadings(false, 5);
      const refused = await post(http, 'mill-q', T0, rows);
      assert.equal(refused.status, 503, JSON.stringify(refused.body));
      assert.equal(refused.headers['retry-after'], '1');
      assert.match((refused.body as { detail: string }).detail, /readings are kept/);
      // The sender's retry of the same body: nothing new, and nothing lost.
      const retry = await post(http, 'mill-q', T0, rows).expect(200);
      assert.equal(retry.body.duplicates, 5, JSON.stringify(retry.body));
      assert.equal(retry.body.late, 0);
      const times = await until('the kept readings predicted', async () => {
        const t = await predictionTimes(http, 'mill-q');
        return t.length === 5 ? t : undefined;
      });
      assert.deepEqual(
        times,
        rows.map((_, i) => iso(T0 + i * 1000)),
      );
    } finally {
      engine.infer = infer;
    }
  });

  it('a reading the model keeps failing on is dead-lettered, and the readings behind it are predicted in order', async () => {
    const engine = app.get(InferenceEngine);
    const infer = engine.infer.bind(engine);
    const model = app.get(AssetRegistry).model('machine-failure');
    const wear = model.columns.findIndex((c) => c.source === 'Tool wear [min]');
    const { mean, scale } = model.columns[wear];
    const POISON = 0.5; // minutes of tool wear: no row of the data set has it
    // The runtime fails any call that holds the poisoned row (the rows stacked with it too), and no other.
    engine.infer = (...args: Parameters<InferenceEngine['infer']>) => {
      const features = args[2][model.inputName];
      const data = features.data as Float32Array;
      for (let i = 0; i < features.dims[0]; i++) {
        if (Math.abs(data[i * features.dims[1] + wear] * scale + mean - POISON) < 1e-3) {
          return Promise.reject(new AppError('INFERENCE_FAILED', 'model machine-failure version 1 failed to run'));
        }
      }
      return infer(...args);
    };
    try {
      const rows = ai4iReadings(false, 3 + MAX_INFERENCE_FAILURES);
      rows[1] = { ...rows[1], tool_wear: POISON };
      const first = await post(http, 'mill-p', T0, rows.slice(0, 3));
      assert.equal(first.status, 500, JSON.stringify(first.body));
      assert.match((first.body as { detail: string }).detail, /readings are kept/);
      // Each batch tries the held rows again first; the stream's own retries may count some tries too.
      let sent = 3;
      while (sent < rows.length) {
        const res = await post(http, 'mill-p', T0 + sent * 1000, [rows[sent]]);
        sent++;
        if (res.status === 200) break;
        assert.equal(res.status, 500, JSON.stringify(res.body));
      }
      assert.ok(sent - 3 < MAX_INFERENCE_FAILURES, `flowing again after ${sent - 3} more batches`);
      const letters = await deadLettersOf(http, 'mill-p');
      assert.equal(letters.length, 1, JSON.stringify(letters));
      assert.equal(letters[0].reason, 'inference-failed');
      assert.equal(await deadLettersCounted(http, 'inference-failed'), 1);
      assert.equal(letters[0].source, 'inference');
      assert.equal((JSON.parse(letters[0].payload) as { timestamp: string }).timestamp, iso(T0 + 1000));
      assert.deepEqual(
        await predictionTimes(http, 'mill-p'),
        rows
          .slice(0, sent)
          .map((_, i) => iso(T0 + i * 1000))
          .filter((_, i) => i !== 1),
      );
    } finally {
      engine.infer = infer;
    }
  });

  it("an alarm the database does not take while it is away is not lost: 503, then raised once when it's back, predictions in order", async () => {
    const db = app.get(DataSource);
    // 57014 (a statement cancelled) is an outage.
    await db.query(
      `CREATE FUNCTION refuse_alarm() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused' USING ERRCODE = '57014'; END $$`,
    );
    await db.query(
      'CREATE TRIGGER refuse_alarm BEFORE INSERT ON manufacturing_alarms FOR EACH ROW EXECUTE FUNCTION refuse_alarm()',
    );
    const rows = [...ai4iReadings(false, 3), ...ai4iReadings(true, 10)];
    try {
      const outage = await post(http, 'mill-a', T0, rows.slice(0, 11));
      assert.equal(outage.status, 503, JSON.stringify(outage.body));
      assert.equal((outage.body as { code: string }).code, 'STORAGE_UNAVAILABLE');
      assert.equal(outage.headers['retry-after'], '1');
      const status = await http.get('/v1/manufacturing/assets/mill-a/status').set('Authorization', operator);
      assert.equal((status.body as { alarm: { active: boolean } }).alarm.active, false, 'not raised while not stored');
      const again = await post(http, 'mill-a', T0 + 11_000, rows.slice(11));
      assert.equal(again.status, 503, JSON.stringify(again.body));
    } finally {
      await db.query('DROP TRIGGER refuse_alarm ON manufacturing_alarms');
      await db.query('DROP FUNCTION refuse_alarm()');
    }
    await until('the alarm raised', async () => ((await alarmStates(http, 'mill-a')).length > 0 ? true : undefined));
    assert.deepEqual(await alarmStates(http, 'mill-a'), ['raised']);
    await until('every reading predicted', async () =>
      (await predictionTimes(http, 'mill-a')).length === rows.length ? true : undefined,
    );
    assert.deepEqual(
      await predictionTimes(http, 'mill-a'),
      rows.map((_, i) => iso(T0 + i * 1000)),
    );
    assert.deepEqual(await deadLettersOf(http, 'mill-a'), [], 'an outage gives up on nothing');
    const after = await http.get('/v1/manufacturing/assets/mill-a/status').set('Authorization', operator);
    assert.equal((after.body as { alarm: { active: boolean } }).alarm.active, true);
  });

  it('a batch sent again while its predictions wait for the database is answered 503, not 200, until they are stored', async () => {
    await http.put('/v1/manufacturing/assets/mill-s').set('Authorization', admin).send(millAsset('mill-s')).expect(200);
    const db = app.get(DataSource);
    // 57014 (a statement cancelled) is an outage: the writer keeps the predictions and writes them again.
    await db.query(
      `CREATE FUNCTION refuse_prediction() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused' USING ERRCODE = '57014'; END $$`,
    );
    await db.query(
      'CREATE TRIGGER refuse_prediction BEFORE INSERT ON manufacturing_predictions FOR EACH STATEMENT EXECUTE FUNCTION refuse_prediction()',
    );
    const rows = ai4iReadings(false, 4);
    try {
      const outage = await post(http, 'mill-s', T0, rows);
      assert.equal(outage.status, 503, JSON.stringify(outage.body));
      assert.match((outage.body as { detail: string }).detail, /kept/);
      // Sent again while the database is still away: its readings are duplicates, but nothing of them is stored, so
      // a 200 would have the sender drop readings a crash then loses.
      const again = await post(http, 'mill-s', T0, rows);
      assert.equal(again.status, 503, JSON.stringify(again.body));
      assert.equal((again.body as { code: string }).code, 'STORAGE_UNAVAILABLE');
      assert.deepEqual(await predictionTimes(http, 'mill-s'), []);
    } finally {
      await db.query('DROP TRIGGER refuse_prediction ON manufacturing_predictions');
      await db.query('DROP FUNCTION refuse_prediction()');
    }
    // Back: the batch sent again (as Retry-After asks) is answered 200 once they are stored, not before.
    const stored = await until('the batch sent again answered 200', async () => {
      const res = await post(http, 'mill-s', T0, rows);
      return res.status === 200 ? res : undefined;
    });
    assert.equal((stored.body as { duplicates: number }).duplicates, 4);
    assert.deepEqual(
      await predictionTimes(http, 'mill-s'),
      rows.map((_, i) => iso(T0 + i * 1000)),
    );
  });

  it("predictions a removed asset's writer kept are not written over the asset made again, and are dropped", async () => {
    const db = app.get(DataSource);
    const incarnation = async () =>
      (
        await db.query<Array<{ incarnation: string }>>(
          "SELECT incarnation FROM manufacturing_assets WHERE asset_id = 'mill-l'",
        )
      )[0].incarnation;
    const stored = () =>
      db.query<Array<{ at: Date; incarnation: string }>>(
        "SELECT at, incarnation FROM manufacturing_predictions WHERE asset_id = 'mill-l' ORDER BY at",
      );
    await http.put('/v1/manufacturing/assets/mill-l').set('Authorization', admin).send(millAsset('mill-l')).expect(200);
    const removed = await incarnation();
    // 57014 (a statement cancelled) is an outage, for the removed asset's rows alone: the writer keeps them and writes
    // them again, after the asset made again has stored its own at the same times.
    await db.query(
      `CREATE FUNCTION refuse_removed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused' USING ERRCODE = '57014'; END $$`,
    );
    await db.query(
      'CREATE TRIGGER refuse_removed BEFORE INSERT ON manufacturing_predictions FOR EACH ROW ' +
        `WHEN (NEW.incarnation = '${removed}') EXECUTE FUNCTION refuse_removed()`,
    );
    try {
      const outage = await post(http, 'mill-l', T0, ai4iReadings(false, 4));
      assert.equal(outage.status, 503, JSON.stringify(outage.body));
      await http.delete('/v1/manufacturing/assets/mill-l').set('Authorization', admin).expect(204);
      await http
        .put('/v1/manufacturing/assets/mill-l')
        .set('Authorization', admin)
        .send(millAsset('mill-l'))
        .expect(200);
      assert.notEqual(await incarnation(), removed);
      // The new asset's rows are stored, its call answered at once though the removed asset's are still kept (it was
      // answered 503 until the writer had stored them: they are another incarnation's, none of its readings).
      assert.ok(app.get(PlantRecordsRepository).keptPredictions > 0, "the removed asset's rows still kept");
      const made = await post(http, 'mill-l', T0, ai4iReadings(true, 2));
      assert.equal(made.status, 200, JSON.stringify(made.body));
    } finally {
      await db.query('DROP TRIGGER refuse_removed ON manufacturing_predictions');
      await db.query('DROP FUNCTION refuse_removed()');
    }
    const made = await incarnation();
    await until('the kept predictions written', () =>
      app.get(PlantRecordsRepository).keptPredictions === 0 ? true : undefined,
    );
    // The new asset's two predictions stand; the removed asset's four, its asset gone, are not stored.
    assert.deepEqual(
      (await stored()).map((r) => [new Date(r.at).toISOString(), r.incarnation]),
      [
        [iso(T0), made],
        [iso(T0 + 1000), made],
      ],
    );
    assert.deepEqual(await predictionTimes(http, 'mill-l'), [iso(T0), iso(T0 + 1000)]);
  });

  it('an alarm the database refuses for its content (a CHECK constraint) is dead-lettered and logged with its stack, raised all the same, and holds no reading', async () => {
    const db = app.get(DataSource);
    // NOT VALID: the rows already there are not checked, only new ones (23514 check_violation).
    await db.query(
      "ALTER TABLE manufacturing_alarms ADD CONSTRAINT refuse_mill_c CHECK (asset_id <> 'mill-c') NOT VALID",
    );
    const rows = [...ai4iReadings(false, 3), ...ai4iReadings(true, 10)];
    const logged: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    try {
      process.stderr.write = (chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
        logged.push(String(chunk));
        return (write as (c: unknown, ...r: unknown[]) => boolean)(chunk, ...rest);
      };
      const res = await post(http, 'mill-c', T0, rows);
      process.stderr.write = write;
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.predictions, rows.length, 'every reading predicted, none held behind the alarm');
      assert.ok(
        logged.some(
          (line) => line.includes('alarm refused') && line.includes('refuse_mill_c') && line.includes(' at '),
        ),
        'the refusal logged with its stack',
      );
    } finally {
      process.stderr.write = write;
      await db.query('ALTER TABLE manufacturing_alarms DROP CONSTRAINT refuse_mill_c');
    }
    assert.deepEqual(
      await predictionTimes(http, 'mill-c'),
      rows.map((_, i) => iso(T0 + i * 1000)),
    );
    assert.deepEqual(await alarmStates(http, 'mill-c'), [], 'not in the alarms table');
    const letters = await deadLettersOf(http, 'mill-c');
    assert.equal(letters.length, 1, JSON.stringify(letters));
    assert.equal(letters[0].reason, 'alarm-refused');
    assert.equal(await deadLettersCounted(http, 'alarm-refused'), 1);
    assert.equal(letters[0].source, 'storage');
    assert.equal(letters[0].channel, 'manufacturing_alarms');
    assert.match(letters[0].detail, /SQLSTATE 23514/);
    assert.doesNotMatch(letters[0].detail, /refuse_mill_c/, "the database's own words are logged, not served");
    const payload = JSON.parse(letters[0].payload) as { state: string; metric: string; at: string };
    assert.equal(payload.state, 'raised');
    assert.equal(payload.metric, 'failure');
    const status = await http.get('/v1/manufacturing/assets/mill-c/status').set('Authorization', operator);
    const alarm = (status.body as { alarm: { active: boolean; since?: string } }).alarm;
    assert.equal(alarm.active, true, 'raised all the same: the plant is told');
    assert.equal(alarm.since, payload.at);
  });

  it('a prediction the database refuses (not an outage) holds no other: the rest stored, it dead-lettered (or logged), the caller answered 500', async () => {
    const db = app.get(DataSource);
    const refusedAt = [iso(T0 + 2000), iso(T0 + 7000)];
    await db.query(
      `CREATE FUNCTION refuse_prediction() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.asset_id = 'mill-w' AND NEW.at IN ('${refusedAt[0]}', '${refusedAt[1]}') THEN RAISE EXCEPTION 'prediction refused'; END IF; RETURN NEW; END $$`,
    );
    await db.query(
      'CREATE TRIGGER refuse_prediction BEFORE INSERT ON manufacturing_predictions FOR EACH ROW EXECUTE FUNCTION refuse_prediction()',
    );
    const rows = ai4iReadings(false, 10);
    const logged: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    try {
      const first = await post(http, 'mill-w', T0, rows.slice(0, 5));
      assert.equal(first.status, 500, JSON.stringify(first.body));
      assert.equal((first.body as { code: string }).code, 'INTERNAL');
      assert.equal(first.headers['retry-after'], undefined);
      assert.deepEqual(
        await predictionTimes(http, 'mill-w'),
        [0, 1, 3, 4].map((i) => iso(T0 + i * 1000)),
        'the others stored by the time the caller is answered',
      );
      const letters = await deadLettersOf(http, 'mill-w');
      assert.equal(letters.length, 1, JSON.stringify(letters));
      assert.equal(letters[0].reason, 'prediction-refused');
      assert.equal(await deadLettersCounted(http, 'prediction-refused'), 1);
      assert.equal(letters[0].source, 'storage');
      assert.equal(letters[0].channel, 'manufacturing_predictions');
      assert.match(letters[0].detail, /SQLSTATE P0001/);
      assert.doesNotMatch(letters[0].detail, /prediction refused/, "the database's own words are logged, not served");
      const payload = JSON.parse(letters[0].payload) as { timestamp: string; modelVersion: string; value: number };
      assert.equal(payload.timestamp, refusedAt[0]);
      assert.equal(payload.modelVersion, '1');
      assert.equal(typeof payload.value, 'number');
      // Sent again: nothing new, and nothing left behind to write.
      const retry = await post(http, 'mill-w', T0, rows.slice(0, 5)).expect(200);
      assert.equal(retry.body.duplicates, 5, JSON.stringify(retry.body));

      // Its dead letter refused too: the log is what is left of it, enough to find it.
      await db.query(
        `CREATE FUNCTION refuse_letter() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'letter refused'; END $$`,
      );
      await db.query(
        'CREATE TRIGGER refuse_letter BEFORE INSERT ON manufacturing_dead_letters FOR EACH ROW EXECUTE FUNCTION refuse_letter()',
      );
      process.stderr.write = (chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
        logged.push(String(chunk));
        return (write as (c: unknown, ...r: unknown[]) => boolean)(chunk, ...rest);
      };
      const second = await post(http, 'mill-w', T0 + 5000, rows.slice(5));
      process.stderr.write = write;
      assert.equal(second.status, 500, JSON.stringify(second.body));
      assert.ok(
        logged.some(
          (line) =>
            line.includes('dead letters too') &&
            line.includes('mill-w') &&
            line.includes(refusedAt[1]) &&
            line.includes('prediction refused'),
        ),
        'the refused prediction logged with its asset, time and what the database said',
      );
      assert.equal((await predictionTimes(http, 'mill-w')).length, 8);
      assert.equal(await deadLettersCounted(http, 'prediction-refused'), 1, 'counted only once stored');
    } finally {
      process.stderr.write = write;
      await db.query('DROP TRIGGER IF EXISTS refuse_letter ON manufacturing_dead_letters');
      await db.query('DROP FUNCTION IF EXISTS refuse_letter()');
      await db.query('DROP TRIGGER refuse_prediction ON manufacturing_predictions');
      await db.query('DROP FUNCTION refuse_prediction()');
    }
  });

  it('an alarm whose audit row cannot be written takes no effect; it is raised, audited once, when the trail returns', async () => {
    const db = app.get(DataSource);
    await http
      .put('/v1/manufacturing/assets/mill-x')
      .set('Authorization', admin)
      .send(millAsset('mill-x', LATCHING))
      .expect(200);
    await db.query(
      `CREATE FUNCTION refuse_alarm_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN ` +
        `IF NEW.action LIKE 'manufacturing.alarm%' THEN RAISE EXCEPTION 'no room' USING ERRCODE = 'disk_full'; END IF; ` +
        `RETURN NEW; END $$`,
    );
    await db.query(
      'CREATE TRIGGER refuse_alarm_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_alarm_audit()',
    );
    const alarmRows = async () =>
      Number(
        (
          await db.query<Array<{ n: string }>>(
            "SELECT count(*) AS n FROM audit_events WHERE action = 'manufacturing.alarm-raised' AND output_summary->>'assetId' = 'mill-x'",
          )
        )[0].n,
      );
    try {
      const res = await post(http, 'mill-x', T0, ai4iReadings(true, 2));
      assert.equal(res.status, 503);
      assert.equal(res.body.code, 'AUDIT_UNAVAILABLE');
      // Read past the HTTP routes, which the unwritable trail refuses (503) until it recovers.
      const stored = await db.query("SELECT 1 FROM manufacturing_alarms WHERE asset_id = 'mill-x'");
      assert.equal(stored.length, 0, 'not stored');
      assert.equal(app.get(PlantStream).status('mill-x').alarm.active, false, 'not in effect');
      assert.equal(await alarmRows(), 0);
    } finally {
      await db.query('DROP TRIGGER IF EXISTS refuse_alarm_audit ON audit_events');
      await db.query('DROP FUNCTION refuse_alarm_audit()');
    }
    // The readings were kept: predicted again once the trail takes rows, the alarm raised and audited once.
    await until(
      'the alarm raised',
      async () => ((await alarmStates(http, 'mill-x')).length === 1 ? true : undefined),
      30_000,
    );
    assert.deepEqual(await alarmStates(http, 'mill-x'), ['raised']);
    assert.equal(await alarmRows(), 1);
  });

  it('a dead letter the database refuses: 503 with Retry-After for an outage, a logged 500 for anything else', async () => {
    const db = app.get(DataSource);
    // Refuses with the SQLSTATE the trigger is given: 57014 (a statement cancelled) is an outage, P0001 is not.
    await db.query(
      `CREATE FUNCTION refuse_dead_letter() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused' USING ERRCODE = TG_ARGV[0]; END $$`,
    );
    const refuseWith = async (state: string) => {
      await db.query('DROP TRIGGER IF EXISTS refuse_dead_letter ON manufacturing_dead_letters');
      await db.query(
        `CREATE TRIGGER refuse_dead_letter BEFORE INSERT ON manufacturing_dead_letters FOR EACH ROW EXECUTE FUNCTION refuse_dead_letter('${state}')`,
      );
    };
    const [good] = ai4iReadings(false, 1);
    const bad = (ms: number) =>
      http
        .post('/v1/manufacturing/assets/mill-q/readings')
        .set('Authorization', scada)
        .send({ readings: [{ timestamp: iso(ms), values: { ...good, torque: 'high' } }] });
    const logged: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    try {
      await refuseWith('57014');
      const outage = await bad(T0 + 100_000);
      assert.equal(outage.status, 503, JSON.stringify(outage.body));
      assert.equal((outage.body as { code: string }).code, 'STORAGE_UNAVAILABLE');
      assert.equal(outage.headers['retry-after'], '1');

      await refuseWith('P0001');
      process.stderr.write = (chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
        logged.push(String(chunk));
        return (write as (c: unknown, ...r: unknown[]) => boolean)(chunk, ...rest);
      };
      const bug = await bad(T0 + 101_000);
      process.stderr.write = write;
      assert.equal(bug.status, 500, JSON.stringify(bug.body));
      const problem = bug.body as { code: string; requestId: string; detail: string };
      assert.equal(problem.code, 'INTERNAL');
      assert.equal(bug.headers['retry-after'], undefined);
      assert.doesNotMatch(problem.detail, /refused/, 'nothing internal in the answer');
      assert.ok(
        logged.some((line) => line.includes(problem.requestId) && line.includes('refused')),
        'the error logged with its request id',
      );
    } finally {
      process.stderr.write = write;
      await db.query('DROP TRIGGER IF EXISTS refuse_dead_letter ON manufacturing_dead_letters');
      await db.query('DROP FUNCTION refuse_dead_letter()');
    }
  });
});

describe('manufacturing: held readings and alarms survive quiet assets and restarts', { skip: DATASETS_SKIP }, () => {
  let modelsDir: string;
  let dataDir: string;
  before(async () => {
    modelsDir = bundledModelsDir(['manufacturing']);
    dataDir = await freshDataDir();
  });
  after(() => rmSync(modelsDir, { recursive: true, force: true }));

  const start = () =>
    createTestApp({ MODELS_DIR: modelsDir, DATA_DIR: dataDir, MANUFACTURING_LATE_TOLERANCE_MS: '1500' });

  it('releases held readings when the asset goes quiet and at shutdown; a raised alarm stays raised after a restart', async () => {
    let app = await start();
    let http = request(app.getHttpServer());
    await http
      .put('/v1/manufacturing/assets/mill-r')
      .set('Authorization', admin)
      .send(millAsset('mill-r', LATCHING))
      .expect(200);
    // Within the tolerance, readings wait for newer ones; a quiet asset has them released anyway.
    const quiet = await post(http, 'mill-r', T0, ai4iReadings(false, 2)).expect(200);
    assert.equal(quiet.body.predictions, 0);
    await until('the held readings predicted', async () =>
      (await predictionTimes(http, 'mill-r')).length === 2 ? true : undefined,
    );
    // Failure rows raise the alarm once they are released; the last ones are still held at shutdown.
    const failing = ai4iReadings(true, 6);
    await post(http, 'mill-r', T0 + 10_000, failing).expect(200);
    await app.close();

    app = await start();
    http = request(app.getHttpServer());
    const times = await predictionTimes(http, 'mill-r');
    assert.equal(times.length, 8, 'every accepted reading predicted, the held ones at shutdown');
    assert.deepEqual(await alarmStates(http, 'mill-r'), ['raised']);
    const status = await http.get('/v1/manufacturing/assets/mill-r/status').set('Authorization', operator);
    assert.equal((status.body as { alarm: { active: boolean } }).alarm.active, true, 'restored after the restart');
    // More failure rows after the restart: the alarm is already raised, so it is not raised again.
    await post(http, 'mill-r', T0 + 20_000, ai4iReadings(true, 6)).expect(200);
    await until('the new readings predicted', async () =>
      (await predictionTimes(http, 'mill-r')).length === 14 ? true : undefined,
    );
    assert.deepEqual(await alarmStates(http, 'mill-r'), ['raised']);
    await app.close();
  });
});
