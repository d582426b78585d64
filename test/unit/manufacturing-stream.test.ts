import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { Logger, LoggerService } from '@nestjs/common';
import { QueryFailedError } from 'typeorm';
import { AppError } from '../../src/common/errors/app-error';
import {
  MAX_INFERENCE_FAILURES,
  MAX_UNPREDICTED,
  AlarmEvent,
  RawReading,
  ReadingsKept,
  StreamedAlarm,
} from '../../src/domains/manufacturing/plant-stream.service';
import { closedMillAlarm } from '../fixtures/plant-data';
import { plantStreamHarness } from '../fixtures/plant-stream-harness';

const T0 = Date.now() - 3_600_000;
const HTTP = { source: 'http', name: 'POST /v1/manufacturing/assets/mill-1/readings' } as const;

/** A `pg` error as TypeORM wraps it: a message and a SQLSTATE. */
const failedQuery = (message: string, code: string) =>
  new QueryFailedError('INSERT ...', [], Object.assign(new Error(message), { code }));

/** The error an ingest was refused with. */
const refused = (ingest: Promise<unknown>) =>
  ingest.then(
    () => assert.fail('ingest resolved'),
    (e: unknown) => e,
  );

/** Prediction times, in ms after T0. */
const times = (rows: Array<{ at: Date }>) => rows.map((r) => r.at.getTime() - T0);

/**
 * For the tests of the enclosing describe: mocked setTimeout (retries run only when a test ingests: the
 * stream's own retry timers never fire mid-test), and the logger quiet but for its errors, returned.
 */
function quietStreamWithMockTimers(): unknown[] {
  const errors: unknown[] = [];
  beforeEach(() => {
    mock.timers.enable({ apis: ['setTimeout'] });
    errors.length = 0;
    const quiet = () => undefined;
    const logger: LoggerService = { log: quiet, warn: quiet, error: (message: unknown) => errors.push(message) };
    Logger.overrideLogger(logger);
  });
  afterEach(() => {
    mock.timers.reset();
    Logger.overrideLogger(false);
  });
  return errors;
}

describe('manufacturing stream: the rows that gave no prediction, for a restart', () => {
  /** A reading with only these of the mill's inputs. */
  const partial = (r: RawReading, ...keep: number[]): RawReading => ({
    timestamp: r.timestamp,
    values: Object.fromEntries(Object.entries(r.values).filter((_, i) => keep.includes(i))),
  });

  it('kept before the readings are answered; a database outage is a 503, and they are kept with the next release', async () => {
    const { stream, records, reading } = plantStreamHarness();
    records.refuseOpening = failedQuery('terminating connection due to administrator command', '57P01');
    const error = (await refused(stream.ingest('mill-1', [partial(reading(T0, 10), 0)], HTTP))) as AppError;
    assert.equal(error.code, 'STORAGE_UNAVAILABLE');
    assert.match(error.detail, /gave no prediction could not be kept/);
    records.refuseOpening = undefined;
    // The next reading still lacks tags: its values carry the first's, which it makes needless.
    const next = await stream.ingest('mill-1', [partial(reading(T0 + 1000, 10), 1)], HTTP);
    assert.deepEqual([next.accepted, next.predictions], [1, 0]);
    assert.equal(records.opening.length, 1);
    const [{ rows }] = records.opening;
    assert.deepEqual(
      rows.map((r) => [r.timestamp - T0, r.first, Array.from(r.row).filter(Number.isNaN).length]),
      [[1000, true, 3]],
    );
    // Every tag seen: predicted, and nothing more kept.
    assert.equal((await stream.ingest('mill-1', [reading(T0 + 2000, 10)], HTTP)).predictions, 1);
    assert.equal(records.opening.length, 1);
  });

  it('a restart takes them up: the tags seen before it feed the next reading', async () => {
    const { stream, records, reading, model } = plantStreamHarness();
    const full = reading(T0 + 1000, 42);
    const row = model.sensorSources.map((input, i) => (i < 2 ? (full.values[input] as number) : NaN));
    records.recentOpening = () =>
      Promise.resolve(new Map([['mill-1', [{ at: T0, modelVersion: model.version, inputs: row, first: true }]]]));
    await stream.onModuleInit();
    const next = await stream.ingest('mill-1', [partial(full, 2, 3, 4)], HTTP);
    assert.deepEqual([next.accepted, next.predictions], [1, 1]);
    assert.deepEqual(
      records.predictions[0].inputs,
      model.sensorSources.map((input) => Math.fround(full.values[input] as number)),
    );
    // Sent again, the reading before the restart is a duplicate.
    assert.equal((await stream.ingest('mill-1', [partial(reading(T0, 1), 0)], HTTP)).duplicates, 1);
  });
});

describe('manufacturing stream: a batch sent again while the first call is still writing', () => {
  const outage = () => failedQuery('terminating connection due to administrator command', '57P01');
  /** Settles once the stream has nothing more to do for now (inference and writes are promises, no timers). */
  const settle = () => new Promise((done) => setImmediate(done));
  /** Whether `call` has settled yet, without waiting for it. */
  const settled = (call: Promise<unknown>) => {
    const state = { done: false };
    call.then(
      () => (state.done = true),
      () => (state.done = true),
    );
    return state;
  };

  it("its predictions: the second call waits for the first's write, and is refused as the first is should it fail; no duplicate told taken, nothing counted twice", async () => {
    const { stream, records, reading } = plantStreamHarness();
    let release!: (error?: Error) => void;
    let kept = false;
    records.keepsPredictionsOf = () => kept;
    records.addPredictions = () =>
      new Promise<void>((resolve, reject) => {
        release = (error) => {
          // The writer keeps the rows of an INSERT the database did not take, for a retry.
          kept = error !== undefined;
          if (error) reject(error);
          else resolve();
        };
      });
    const batch = [reading(T0, 10), reading(T0 + 1000, 11)];
    const first = stream.ingest('mill-1', batch, HTTP);
    first.catch(() => undefined);
    await settle();
    const second = stream.ingest('mill-1', batch, HTTP);
    second.catch(() => undefined);
    const state = settled(second);
    await settle();
    assert.equal(state.done, false, 'the second call answered while the first one was still writing');
    release(outage());
    for (const call of [first, second]) {
      const error = await refused(call);
      assert.ok(error instanceof ReadingsKept, String(error));
      assert.equal(error.code, 'STORAGE_UNAVAILABLE');
    }
    // Once the database takes them, the batch sent again is answered as duplicates, counted once.
    kept = false;
    records.addPredictions = (rows) => {
      records.predictions.push(...rows);
      return Promise.resolve();
    };
    const third = await stream.ingest('mill-1', batch, HTTP);
    assert.deepEqual([third.accepted, third.duplicates, third.predictions], [0, 2, 0]);
    const { counts } = stream.status('mill-1');
    assert.deepEqual([counts.accepted, counts.duplicates], [2, 4]);
  });

  it("its opening rows: the second call waits for the first's write, and writes them again itself should it fail", async () => {
    const { stream, records, reading, model } = plantStreamHarness();
    // One tag alone: a row that gives no prediction, kept as an opening row.
    const lone = (t: number): RawReading => ({
      timestamp: t,
      values: { [model.sensorSources[0]]: reading(t, 10).values[model.sensorSources[0]] },
    });
    let release!: (error?: Error) => void;
    const keepOpening = records.keepOpening.bind(records);
    records.keepOpening = (...args: Parameters<typeof records.keepOpening>) =>
      new Promise<void>((resolve, reject) => {
        release = (error) => {
          records.keepOpening = keepOpening;
          if (error) reject(error);
          else resolve(keepOpening(...args));
        };
      });
    const first = stream.ingest('mill-1', [lone(T0)], HTTP);
    first.catch(() => undefined);
    await settle();
    const second = stream.ingest('mill-1', [lone(T0)], HTTP);
    const state = settled(second);
    await settle();
    assert.equal(state.done, false, 'the second call answered while the first one was still writing');
    release(outage());
    const error = await refused(first);
    assert.ok(error instanceof ReadingsKept, String(error));
    // The database back: the second call wrote the rows the first could not, and says so.
    const summary = await second;
    assert.deepEqual([summary.accepted, summary.duplicates], [0, 1]);
    assert.deepEqual(
      records.opening.map((o) => o.rows.map((r) => r.timestamp - T0)),
      [[0]],
    );
  });
});

describe('manufacturing stream: history older than MANUFACTURING_RETENTION_DAYS', () => {
  const DAY = 24 * 3_600_000;

  it('is refused as invalid, naming the field and the horizon, and dead-lettered; a reading within it is taken', async () => {
    const { stream, records, reading } = plantStreamHarness();
    const now = Date.now();
    const summary = await stream.ingest('mill-1', [reading(now - 31 * DAY, 10), reading(now - 29 * DAY, 11)], HTTP);
    assert.deepEqual([summary.accepted, summary.invalid.length, summary.predictions], [1, 1, 1]);
    assert.equal(summary.invalid[0].index, 0);
    assert.match(
      summary.invalid[0].reason,
      /^timestamp: older than the retention horizon \d{4}-\d\d-\d\dT[\d:.]+Z \(MANUFACTURING_RETENTION_DAYS 30\): its prediction would be purged as soon as stored$/,
    );
    // Its prediction would have gone with the next purge, while the answer counted it.
    assert.deepEqual(
      records.predictions.map((p) => p.at.getTime()),
      [now - 29 * DAY],
    );
    assert.deepEqual(
      records.deadLetters.map((d) => [d.reason, d.detail]),
      [['invalid-value', summary.invalid[0].reason]],
    );
  });

  it('with 0 (kept for good), history of any age is taken', async () => {
    const { stream, records, reading, config } = plantStreamHarness();
    config.MANUFACTURING_RETENTION_DAYS = 0;
    const summary = await stream.ingest('mill-1', [reading(Date.now() - 400 * DAY, 10)], HTTP);
    assert.deepEqual([summary.accepted, summary.predictions], [1, 1]);
    assert.equal(records.deadLetters.length, 0);
  });
});

// A SCADA sends null for a tag it has no value for (a sensor offline). It refused the whole reading before, the tags
// sent with it lost, where a Sparkplug B is_null metric was taken as no value.
describe('manufacturing stream: a null tag value', () => {
  const TORQUE = 'Torque [Nm]';

  it('is no value, as a Sparkplug B null is: the tag keeps its last value and the tags sent with it are taken', async () => {
    const { stream, records, reading } = plantStreamHarness();
    await stream.ingest('mill-1', [reading(T0, 10)], HTTP);
    const next = reading(T0 + 1000, 11);
    const summary = await stream.ingest('mill-1', [{ ...next, values: { ...next.values, [TORQUE]: null } }], HTTP);
    assert.deepEqual([summary.accepted, summary.invalid, summary.predictions], [1, [], 1]);
    assert.deepEqual(records.deadLetters, []);
    const [first, second] = records.predictions.map((p) => p.inputs!);
    assert.deepEqual(
      second.filter((v, i) => v !== first[i]),
      [11],
    );
  });

  it('a reading whose tags are all null has no usable value: refused as invalid, naming them, and dead-lettered', async () => {
    const { stream, records, reading, model } = plantStreamHarness();
    const nulls = Object.fromEntries(model.sensorSources.map((tag) => [tag, null]));
    const summary = await stream.ingest('mill-1', [{ timestamp: T0, values: { ...nulls, Operator: 3 } }], HTTP);
    const reason =
      `no usable value: ${model.sensorSources.join(', ')} are null (no value); none of the asset's other tags has a ` +
      `usable value (its tags: ${model.sensorSources.join(', ')})`;
    assert.deepEqual([summary.accepted, summary.invalid], [0, [{ index: 0, reason }]]);
    assert.deepEqual(
      records.deadLetters.map((d) => [d.reason, d.detail]),
      [['invalid-value', reason]],
    );
    assert.deepEqual([stream.status('mill-1').counts.invalid, records.predictions.length], [1, 0]);
    // A later reading of the asset is taken as ever.
    assert.equal((await stream.ingest('mill-1', [reading(T0 + 1000, 10)], HTTP)).predictions, 1);
  });
});

describe('manufacturing stream: dead letters the database does not take', () => {
  it('a database outage is a 503 STORAGE_UNAVAILABLE with Retry-After', async () => {
    const { stream, records, reading } = plantStreamHarness();
    records.refuseDeadLetters = failedQuery('terminating connection due to administrator command', '57P01');
    const error = await stream.ingest('mill-1', [{ ...reading(T0, 10), timestamp: Number.NaN }], HTTP).then(
      () => assert.fail('ingest resolved'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof AppError, String(error));
    assert.equal(error.code, 'STORAGE_UNAVAILABLE');
    assert.equal(error.retryAfterSeconds, 1);
    assert.match(error.detail, /dead-letter table/);
  });

  it('any other failure is a bug: thrown as it is, for the 500 path that logs it', async () => {
    const { stream, records, reading } = plantStreamHarness();
    const bug = failedQuery('column "payload" does not exist', '42703');
    records.refuseDeadLetters = bug;
    const error = await stream.ingest('mill-1', [{ ...reading(T0, 10), timestamp: Number.NaN }], HTTP).then(
      () => assert.fail('ingest resolved'),
      (e: unknown) => e,
    );
    assert.equal(error, bug);
  });
});

describe('manufacturing stream: a reading its model keeps failing on', () => {
  const errors = quietStreamWithMockTimers();

  const POISON = 13;
  const runFailed = () => new AppError('INFERENCE_FAILED', 'model machine-failure version 1 failed to run');

  it('is dead-lettered after MAX_INFERENCE_FAILURES failures alone, and the readings behind it flow again, in order', async () => {
    const { stream, engine, records, reading } = plantStreamHarness();
    // Any runtime call holding the poisoned row fails: the others' stacked with it too.
    engine.fail = (wears) => (wears.includes(POISON) ? runFailed() : undefined);
    const first = await refused(
      stream.ingest('mill-1', [reading(T0, 10), reading(T0 + 1000, POISON), reading(T0 + 2000, 11)], HTTP),
    );
    assert.ok(first instanceof ReadingsKept, String(first));
    assert.deepEqual(times(records.predictions), [0], 'the row before it predicted');
    assert.ok(
      engine.calls.some((wears) => wears.length === 1 && wears[0] === POISON),
      'the failing row found and run alone',
    );
    for (let i = 2; i < MAX_INFERENCE_FAILURES; i++) {
      const again = await refused(stream.ingest('mill-1', [reading(T0 + i * 1000 + 1000, 20 + i)], HTTP));
      assert.ok(again instanceof ReadingsKept, String(again));
      assert.deepEqual(records.deadLetters, [], `held, not dead-lettered, after ${i} failures`);
      assert.deepEqual(times(records.predictions), [0], 'the readings behind it held, in order');
    }
    const last = T0 + MAX_INFERENCE_FAILURES * 1000 + 1000;
    const summary = await stream.ingest('mill-1', [reading(last, 30)], HTTP);
    assert.equal(records.deadLetters.length, 1);
    const [letter] = records.deadLetters;
    assert.equal(letter.reason, 'inference-failed');
    assert.equal(letter.source, 'inference');
    assert.equal(letter.channel, 'machine-failure@1');
    assert.equal(letter.assetId, 'mill-1');
    assert.match(letter.detail, new RegExp(`failed on this reading ${MAX_INFERENCE_FAILURES} times`));
    const payload = JSON.parse(letter.payload) as { timestamp: string; values: Record<string, number> };
    assert.equal(payload.timestamp, new Date(T0 + 1000).toISOString());
    assert.equal(payload.values['Tool wear [min]'], POISON);
    // Every other reading predicted, in order, the poisoned one left out.
    const expected = [0, 2000, ...Array.from({ length: MAX_INFERENCE_FAILURES - 1 }, (_, i) => (i + 2) * 1000 + 1000)];
    assert.deepEqual(times(records.predictions), expected);
    assert.equal(summary.predictions, expected.length - 1, 'the held rows stored with this batch');
    assert.equal(stream.keptRows(), 0);
    assert.equal(errors.length, 1);
    assert.match(JSON.stringify(errors[0]), /reading dead-lettered/);
  });

  for (const [outage, error] of [
    [
      'the runtime refusing work (queue full)',
      () => new AppError('QUEUE_FULL', 'the queue is full', { retryAfterSeconds: 1 }),
    ],
    ['a runtime that fails every run', runFailed],
  ] as const) {
    it(`holds the readings through ${outage}, however often, then predicts them in order`, async () => {
      const { stream, engine, records, reading } = plantStreamHarness();
      engine.fail = error;
      const attempts = 3 * MAX_INFERENCE_FAILURES;
      for (let i = 0; i < attempts; i++) {
        const kept = await refused(
          stream.ingest('mill-1', [reading(T0 + i * 1000, i), reading(T0 + i * 1000 + 500, i)], HTTP),
        );
        assert.ok(kept instanceof ReadingsKept, String(kept));
      }
      assert.deepEqual(records.deadLetters, []);
      assert.deepEqual(records.predictions, []);
      assert.equal(stream.keptRows(), 2 * attempts);
      engine.fail = undefined;
      await stream.ingest('mill-1', [reading(T0 + attempts * 1000, 1)], HTTP);
      assert.deepEqual(times(records.predictions), [
        ...Array.from({ length: attempts }, (_, i) => [i * 1000, i * 1000 + 500]).flat(),
        attempts * 1000,
      ]);
      assert.equal(stream.keptRows(), 0);
    });
  }

  it('keeps the reading while its dead letter cannot be written: nothing is lost', async () => {
    const { stream, engine, records, reading } = plantStreamHarness();
    engine.fail = (wears) => (wears.includes(POISON) ? runFailed() : undefined);
    records.refuseDeadLetters = failedQuery('terminating connection due to administrator command', '57P01');
    await refused(stream.ingest('mill-1', [reading(T0, POISON)], HTTP));
    for (let i = 1; i <= MAX_INFERENCE_FAILURES; i++) {
      const kept = await refused(stream.ingest('mill-1', [reading(T0 + i * 1000, 20 + i)], HTTP));
      assert.ok(kept instanceof ReadingsKept, String(kept));
    }
    assert.equal(((await refused(stream.ingest('mill-1', [], HTTP))) as AppError).code, 'STORAGE_UNAVAILABLE');
    assert.equal(stream.keptRows(), MAX_INFERENCE_FAILURES + 1, 'the failing reading and those behind it kept');
    records.refuseDeadLetters = undefined;
    await stream.ingest('mill-1', [], HTTP);
    assert.equal(records.deadLetters.length, 1);
    assert.deepEqual(
      times(records.predictions),
      Array.from({ length: MAX_INFERENCE_FAILURES }, (_, i) => (i + 1) * 1000),
    );
    assert.equal(stream.keptRows(), 0);
  });
  it('its dead letter refused other than for an outage: a bug, thrown as it is for the 500 path and logged with its stack; the reading kept', async () => {
    const { stream, engine, records, reading } = plantStreamHarness();
    engine.fail = (wears) => (wears.includes(POISON) ? runFailed() : undefined);
    const bug = failedQuery('column "payload" does not exist', '42703');
    records.refuseDeadLetters = bug;
    await refused(stream.ingest('mill-1', [reading(T0, POISON)], HTTP));
    for (let i = 1; i < MAX_INFERENCE_FAILURES; i++) {
      await refused(stream.ingest('mill-1', [reading(T0 + i * 1000, 20 + i)], HTTP));
    }
    errors.length = 0;
    const thrown = await refused(stream.ingest('mill-1', [reading(T0 + MAX_INFERENCE_FAILURES * 1000, 30)], HTTP));
    assert.equal(thrown, bug, 'not turned into a 503 or a failed inference');
    assert.ok(
      errors.some((e) => {
        const error = (e as { error?: unknown }).error;
        return typeof error === 'string' && error.includes('"payload" does not exist') && error.includes('\n    at ');
      }),
      JSON.stringify(errors),
    );
    assert.equal(stream.keptRows(), MAX_INFERENCE_FAILURES + 1, 'the failing reading and those behind it kept');
    records.refuseDeadLetters = undefined;
    await stream.ingest('mill-1', [], HTTP);
    assert.deepEqual(
      records.deadLetters.map((d) => d.reason),
      ['inference-failed'],
    );
    assert.equal(stream.keptRows(), 0);
  });
});

describe('manufacturing stream: alarms and predictions the database does not take', () => {
  const errors = quietStreamWithMockTimers();

  /** Minutes of tool wear the fake model answers with a failure probability of 0.9 (the alarm raises at 0.5). */
  const WORN = 250;
  /** Two good rows, then two worn ones: the second worn row raises the alarm. */
  const readings = (reading: (t: number, wear: number) => RawReading) => [
    reading(T0, 10),
    reading(T0 + 1000, WORN),
    reading(T0 + 2000, WORN),
    reading(T0 + 3000, WORN),
  ];
  const loggedWithStack = (text: string) =>
    errors.some((e) => {
      const error = (e as { error?: unknown }).error;
      return typeof error === 'string' && error.includes(text) && error.includes('\n    at ');
    });

  it('an alarm refused by a database outage: a 503 with Retry-After; the readings kept, and the alarm raised once when it is stored', async () => {
    const { stream, engine, records, reading } = plantStreamHarness();
    engine.failure = (wear) => (wear >= WORN ? 0.9 : 0.01);
    records.refuseAlarms = failedQuery('terminating connection due to administrator command', '57P01');
    const thrown = await refused(stream.ingest('mill-1', readings(reading), HTTP));
    assert.ok(thrown instanceof ReadingsKept, String(thrown));
    assert.equal(thrown.code, 'STORAGE_UNAVAILABLE');
    assert.equal(thrown.retryAfterSeconds, 1);
    // Worded as every other domain's storage outage (the fault, what was not done), then what was kept.
    assert.equal(
      thrown.detail,
      'the database is unavailable: the alarm could not be stored; the readings are kept and predicted when it recovers',
    );
    assert.deepEqual(times(records.predictions), [0, 1000], 'the rows before the alarm stored');
    assert.equal(stream.keptRows(), 2, 'the row that raises the alarm and the one after it kept');
    assert.equal(stream.status('mill-1').alarm.active, false, 'not raised while not stored');
    assert.deepEqual(records.deadLetters, [], 'an outage passes: nothing given up on');
    records.refuseAlarms = undefined;
    await stream.ingest('mill-1', [], HTTP);
    assert.deepEqual(times(records.predictions), [0, 1000, 2000, 3000]);
    assert.deepEqual(
      records.alarms.map((a) => a.state),
      ['raised'],
    );
    assert.equal(stream.keptRows(), 0);
  });

  it('an alarm refused for its content (a check constraint) is dead-lettered (alarm-refused) and logged with its stack; it is raised all the same, and the readings go on', async () => {
    const { stream, engine, records, reading } = plantStreamHarness();
    engine.failure = (wear) => (wear >= WORN ? 0.9 : 0.01);
    records.refuseAlarms = failedQuery('new row violates check constraint "alarm_value"', '23514');
    const told: string[] = [];
    stream.onAlarm((event) => {
      told.push(event.state);
      return Promise.resolve();
    });
    const streamed: string[] = [];
    stream.alarms.subscribe((event) => streamed.push(event.state));
    const summary = await stream.ingest('mill-1', readings(reading), HTTP);
    assert.equal(summary.predictions, 4, 'every reading predicted, none held behind the alarm');
    assert.deepEqual(times(records.predictions), [0, 1000, 2000, 3000]);
    assert.equal(stream.keptRows(), 0);
    assert.equal(records.alarms.length, 0, 'the alarms table did not take it');
    assert.equal(records.deadLetters.length, 1);
    const [letter] = records.deadLetters;
    assert.equal(letter.reason, 'alarm-refused');
    assert.equal(letter.source, 'storage');
    assert.equal(letter.channel, 'manufacturing_alarms');
    assert.equal(letter.assetId, 'mill-1');
    assert.match(letter.detail, /SQLSTATE 23514/);
    assert.doesNotMatch(letter.detail, /alarm_value/, "the database's own words are logged, not served");
    const payload = JSON.parse(letter.payload) as Record<string, unknown>;
    assert.deepEqual(
      { ...payload, value: undefined },
      {
        state: 'raised',
        metric: 'failure',
        value: undefined,
        threshold: 0.5,
        at: new Date(T0 + 2000).toISOString(),
        model: { name: 'machine-failure', version: '1' },
      },
    );
    assert.ok(loggedWithStack('alarm_value'), JSON.stringify(errors));
    // A plant operator must not lose a raised alarm: it is raised, told and streamed as any other.
    assert.equal(stream.status('mill-1').alarm.active, true);
    assert.equal(stream.status('mill-1').alarm.since, new Date(T0 + 2000).toISOString());
    assert.deepEqual(told, ['raised']);
    assert.deepEqual(streamed, ['raised']);
    // Later readings are not held, and a later alarm the database takes is stored.
    records.refuseAlarms = undefined;
    await stream.ingest('mill-1', [reading(T0 + 4000, 10), reading(T0 + 5000, 10)], HTTP);
    assert.deepEqual(
      records.alarms.map((a) => a.state),
      ['cleared'],
    );
    assert.equal(records.predictions.length, 6);
  });

  it('an alarm refused for its content whose dead letter waits for the database (an outage): the readings are kept, the alarm state as before, until it takes the dead letter', async () => {
    const { stream, engine, records, reading } = plantStreamHarness();
    engine.failure = (wear) => (wear >= WORN ? 0.9 : 0.01);
    records.refuseAlarms = failedQuery('new row violates check constraint "alarm_value"', '23514');
    records.refuseDeadLetters = failedQuery('terminating connection due to administrator command', '57P01');
    const thrown = await refused(stream.ingest('mill-1', readings(reading), HTTP));
    assert.ok(thrown instanceof ReadingsKept, String(thrown));
    assert.equal(thrown.code, 'STORAGE_UNAVAILABLE');
    assert.equal(stream.keptRows(), 2);
    assert.equal(stream.status('mill-1').alarm.active, false);
    records.refuseDeadLetters = undefined;
    await stream.ingest('mill-1', [], HTTP);
    assert.deepEqual(
      records.deadLetters.map((d) => d.reason),
      ['alarm-refused'],
    );
    assert.deepEqual(times(records.predictions), [0, 1000, 2000, 3000]);
    assert.equal(stream.status('mill-1').alarm.active, true);
    assert.equal(stream.keptRows(), 0);
  });

  it('an alarm refused for its content whose dead letter is refused too: logged with all it held, raised all the same, and the readings go on', async () => {
    const { stream, engine, records, reading } = plantStreamHarness();
    engine.failure = (wear) => (wear >= WORN ? 0.9 : 0.01);
    records.refuseAlarms = failedQuery('new row violates check constraint "alarm_value"', '23514');
    records.refuseDeadLetters = failedQuery('value too long for type character varying(64)', '22001');
    await stream.ingest('mill-1', readings(reading), HTTP);
    assert.deepEqual(times(records.predictions), [0, 1000, 2000, 3000]);
    assert.equal(stream.status('mill-1').alarm.active, true);
    const lost = errors.find((e) => /dead letter too/.test((e as { msg?: string }).msg ?? '')) as
      { alarm?: { assetId: string; state: string; at: string }; error?: string; deadLetterError?: string } | undefined;
    assert.ok(lost, JSON.stringify(errors));
    assert.deepEqual(
      { assetId: lost.alarm?.assetId, state: lost.alarm?.state, at: lost.alarm?.at },
      { assetId: 'mill-1', state: 'raised', at: new Date(T0 + 2000).toISOString() },
    );
    assert.match(String(lost.error), /alarm_value/);
    assert.match(String(lost.deadLetterError), /character varying\(64\)/);
  });

  // Worded as every other domain's storage outage: the fault, what was not done, then what was kept.
  for (const [what, refusal, fault] of [
    [
      'a database outage',
      () => failedQuery('terminating connection due to administrator command', '57P01'),
      'unavailable',
    ],
    ['a full disk', () => failedQuery('could not extend file: No space left on device', '53100'), 'out of disk space'],
  ] as const) {
    it(`predictions refused by ${what}: a 503 with Retry-After that says so, the rows kept by the writer`, async () => {
      const { stream, records, reading } = plantStreamHarness();
      records.refusePredictions = refusal();
      const thrown = await refused(stream.ingest('mill-1', readings(reading), HTTP));
      assert.ok(thrown instanceof ReadingsKept, String(thrown));
      assert.equal(thrown.code, 'STORAGE_UNAVAILABLE');
      assert.equal(thrown.retryAfterSeconds, 1);
      assert.equal(
        thrown.detail,
        `the database is ${fault}: the predictions could not be stored yet; they are kept and stored when it recovers`,
      );
    });
  }

  it('predictions refused other than for an outage: a bug, its error thrown as it is for the 500 path', async () => {
    const { stream, records, reading } = plantStreamHarness();
    const bug = failedQuery('value out of range', '22003');
    records.refusePredictions = bug;
    assert.equal(await refused(stream.ingest('mill-1', readings(reading), HTTP)), bug);
  });
});

describe('manufacturing stream: a batch out of time order', () => {
  quietStreamWithMockTimers();

  it('is taken in timestamp order: a batch sent newest first is predicted whole, its first copy of a time kept, its refusals named by their index', async () => {
    const { stream, engine, records, reading } = plantStreamHarness();
    const wrong = { timestamp: T0 + 500, values: { ...reading(T0 + 500, 10).values, 'Torque [Nm]': 'high' } };
    const summary = await stream.ingest(
      'mill-1',
      [reading(T0 + 3000, 30), reading(T0 + 2000, 20), wrong, reading(T0 + 1000, 10), reading(T0 + 2000, 99)],
      HTTP,
    );
    assert.deepEqual(
      { ...summary, invalid: summary.invalid.map((i) => i.index) },
      { received: 5, accepted: 3, duplicates: 1, late: 0, invalid: [2], predictions: 3 },
    );
    assert.deepEqual(times(records.predictions), [1000, 2000, 3000]);
    assert.deepEqual(engine.calls.flat(), [10, 20, 30], "the batch's first copy of T0 + 2000 predicted");
    assert.deepEqual(
      records.deadLetters.map((d) => d.reason),
      ['invalid-value'],
    );
  });
});

describe('manufacturing stream: an alarm at its thresholds', () => {
  quietStreamWithMockTimers();

  it('is judged by the prediction as stored and told: a probability shown at raiseAt raises, one shown at clearAt does not clear', async () => {
    // The runtime answers float32: 0.49999997 and 0.29999998 are what it gives closest to 0.5 and 0.3, stored and
    // shown as 0.5 and 0.3 (6 decimals). The harness's mill raises at 0.5 (2 in a row) and clears below 0.3.
    const { stream, engine, records, reading } = plantStreamHarness();
    const answers: Record<number, number> = { 10: 0.01, 20: 0.49999997, 30: 0.29999998 };
    engine.failure = (wear) => answers[wear];
    await stream.ingest('mill-1', [reading(T0, 10), reading(T0 + 1000, 20), reading(T0 + 2000, 20)], HTTP);
    assert.deepEqual(
      records.predictions.map((p) => p.value),
      [0.01, 0.5, 0.5],
    );
    assert.deepEqual(
      records.alarms.map((a) => [a.state, a.value, a.threshold, a.at.getTime() - T0]),
      [['raised', 0.5, 0.5, 2000]],
      'two predictions at raiseAt raise the alarm',
    );
    await stream.ingest('mill-1', [reading(T0 + 3000, 30)], HTTP);
    assert.equal(records.predictions.at(-1)!.value, 0.3);
    assert.deepEqual(
      records.alarms.map((a) => a.state),
      ['raised'],
      'a prediction at clearAt, not below it, leaves the alarm raised',
    );
    assert.equal(stream.status('mill-1').alarm.active, true);
  });
});

describe('manufacturing stream: a streak towards an alarm across a restart', () => {
  quietStreamWithMockTimers();
  /** The mill's stored predictions before the restart, newest first, as recentInputs reads them (value by time). */
  const storedBefore = (model: { version: string; sensorSources: string[] }, values: Array<[number, number]>) =>
    new Map([
      [
        'mill-1',
        values.map(([at, value]) => ({
          at: T0 + at,
          modelVersion: model.version,
          inputs: model.sensorSources.map(() => 1),
          value,
        })),
      ],
    ]);

  it('goes on from the predictions stored before it: the mill raises at its second prediction past raiseAt, the first made before the restart', async () => {
    const { stream, engine, records, reading, model } = plantStreamHarness();
    engine.failure = (wear) => (wear >= 250 ? 0.9 : 0.01);
    records.recentInputs = () =>
      Promise.resolve(
        storedBefore(model, [
          [1000, 0.9],
          [0, 0.01],
        ]),
      );
    await stream.onModuleInit();
    await stream.ingest('mill-1', [reading(T0 + 2000, 250)], HTTP);
    assert.deepEqual(
      records.alarms.map((a) => [a.state, a.at.getTime() - T0]),
      [['raised', 2000]],
    );
  });

  it('counts none made at or before the last stored alarm, nor a run broken by a prediction short of raiseAt', async () => {
    for (const [what, values, alarmAt] of [
      ['after an alarm closed', [[1000, 0.9]], 1000],
      [
        'a run broken',
        [
          [1000, 0.01],
          [500, 0.9],
        ],
        undefined,
      ],
    ] as const) {
      const { stream, engine, records, reading, model } = plantStreamHarness();
      engine.failure = (wear) => (wear >= 250 ? 0.9 : 0.01);
      records.recentInputs = () =>
        Promise.resolve(
          storedBefore(
            model,
            values.map(([at, v]) => [at, v]),
          ),
        );
      if (alarmAt !== undefined) {
        const closed = {
          id: '3',
          assetId: 'mill-1',
          state: 'cleared',
          metric: 'failure',
          value: null,
          threshold: null,
          at: new Date(T0 + alarmAt),
          site: 'plant-1',
          line: 'line-b',
          modelName: 'machine-failure',
          modelVersion: '1',
          reason: 'asset-kind-changed',
        } as const;
        records.lastAlarms = () => Promise.resolve([closed]);
      }
      await stream.onModuleInit();
      await stream.ingest('mill-1', [reading(T0 + 2000, 250)], HTTP);
      assert.equal(records.alarms.length, 0, what);
      await stream.ingest('mill-1', [reading(T0 + 3000, 250)], HTTP);
      assert.deepEqual(
        records.alarms.map((a) => [a.state, a.at.getTime() - T0]),
        [['raised', 3000]],
        what,
      );
    }
  });
});

describe('manufacturing stream: alarms of several assets at once', () => {
  quietStreamWithMockTimers();
  const immediate = () => new Promise<void>((resolve) => setImmediate(resolve));

  it('are stored one at a time and streamed in the order of their ids, however the database answers', async () => {
    const { stream, engine, records, reading } = plantStreamHarness();
    engine.failure = (wear) => (wear >= 250 ? 0.9 : 0.01);
    // A database that answers each insert when the test says, its id taken when asked (as a sequence gives them).
    const pending: Array<() => void> = [];
    let ids = 0;
    records.addAlarm = () => {
      const id = String(++ids);
      return new Promise<string>((resolve) => pending.push(() => resolve(id)));
    };
    let audited = 0;
    stream.auditAlarms(() => {
      audited++;
      return Promise.resolve();
    });
    const streamed: Array<string | undefined> = [];
    stream.alarms.subscribe((event) => streamed.push(event.id));
    const rows = [reading(T0, 10), reading(T0 + 1000, 250), reading(T0 + 2000, 250), reading(T0 + 3000, 250)];
    let settled = false;
    const both = Promise.all([stream.ingest('mill-1', rows, HTTP), stream.ingest('mill-2', rows, HTTP)]).then(
      () => (settled = true),
    );
    for (let i = 0; audited < 2 && i < 10_000; i++) await immediate();
    assert.equal(audited, 2, 'both alarms audited');
    // From the audit on, nothing outside is waited for: had the second alarm not waited its turn, it would be
    // inserting by now. The database answers the newest insert first, as two connections may.
    for (let i = 0; !settled && i < 10_000; i++) {
      await immediate();
      pending
        .splice(0)
        .reverse()
        .forEach((answer) => answer());
    }
    await both;
    assert.equal(ids, 2);
    assert.deepEqual(streamed, ['1', '2']);
  });
});

describe('manufacturing stream: readings held past what an asset keeps', () => {
  const errors = quietStreamWithMockTimers();

  const queueFull = () => new AppError('QUEUE_FULL', 'the queue is full', { retryAfterSeconds: 1 });
  /** A runtime that refuses everything, and the asset holding MAX_UNPREDICTED readings, 10 ms apart. */
  async function full() {
    const harness = plantStreamHarness();
    harness.engine.fail = queueFull;
    const held = Array.from({ length: MAX_UNPREDICTED }, (_, i) => harness.reading(T0 + i * 10, i % 200));
    assert.ok((await refused(harness.stream.ingest('mill-1', held, HTTP))) instanceof ReadingsKept);
    assert.equal(harness.records.deadLetters.length, 0);
    return harness;
  }
  const more = (reading: (t: number, wear: number) => RawReading) =>
    [0, 1, 2].map((i) => reading(T0 + 200_000 + i * 10, 150 + i));

  it('go to the dead-letter table (held-too-long) with their time and values; the newest are kept and predicted later', async () => {
    const { stream, engine, records, reading } = await full();
    assert.ok((await refused(stream.ingest('mill-1', more(reading), HTTP))) instanceof ReadingsKept);
    assert.equal(stream.keptRows(), MAX_UNPREDICTED);
    assert.equal(records.deadLetters.length, 3);
    records.deadLetters.forEach((letter, i) => {
      assert.equal(letter.reason, 'held-too-long');
      assert.equal(letter.source, 'inference');
      assert.equal(letter.channel, 'machine-failure@1');
      assert.equal(letter.assetId, 'mill-1');
      assert.match(letter.detail, /the queue is full/);
      const payload = JSON.parse(letter.payload) as { timestamp: string; values: Record<string, number> };
      assert.equal(payload.timestamp, new Date(T0 + i * 10).toISOString(), 'the oldest given up on');
      assert.equal(payload.values['Tool wear [min]'], i);
    });
    engine.fail = undefined;
    await stream.ingest('mill-1', [], HTTP);
    assert.equal(records.predictions.length, MAX_UNPREDICTED);
    assert.equal(records.predictions[0].at.getTime(), T0 + 30);
    assert.equal(stream.keptRows(), 0);
  });

  it('should the dead-letter table not take them, are logged at error level with their count and times', async () => {
    const { stream, records, reading } = await full();
    records.refuseDeadLetters = failedQuery('terminating connection due to administrator command', '57P01');
    await refused(stream.ingest('mill-1', more(reading), HTTP));
    assert.equal(stream.keptRows(), MAX_UNPREDICTED);
    const logged = errors.find((e) => /held too long/.test((e as { msg?: string }).msg ?? ''));
    assert.ok(logged, JSON.stringify(errors));
    assert.match(String((logged as { error?: unknown }).error), /administrator command/);
    assert.deepEqual(
      { ...logged, error: undefined },
      {
        msg: 'readings lost: held too long, and not taken by the dead-letter table',
        assetId: 'mill-1',
        readings: 3,
        from: new Date(T0).toISOString(),
        to: new Date(T0 + 20).toISOString(),
        error: undefined,
      },
    );
  });
});

// Their waits were jittered by Math.random alone, which no test could steer: drawn now from the stream's retry
// source, as the close retries' are, 0.75 to 1.25 times the wait.
describe('manufacturing stream: the retries of kept readings and of opening rows wait a jittered time', () => {
  quietStreamWithMockTimers();
  const draws = [
    [0, 749, 750],
    [0.999, 1248, 1249.5],
  ] as const;
  /** Lets the retry a tick fired run to its end (setImmediate is not mocked). */
  const settle = async () => {
    for (let i = 0; i < 20; i++) await new Promise((next) => setImmediate(next));
  };

  it('readings the runtime refused are predicted again on their own after 0.75 to 1.25 s, by the random source', async () => {
    for (const [draw, early, due] of draws) {
      const { stream, engine, records, reading } = plantStreamHarness();
      stream.retryRandom = () => draw;
      engine.fail = () => new AppError('QUEUE_FULL', 'the queue is full', { retryAfterSeconds: 1 });
      assert.ok((await refused(stream.ingest('mill-1', [reading(T0, 10)], HTTP))) instanceof ReadingsKept);
      engine.fail = undefined;
      mock.timers.tick(early);
      await settle();
      assert.equal(records.predictions.length, 0, `draw ${draw}: not tried again before ${due} ms`);
      mock.timers.tick(due - early);
      await settle();
      assert.deepEqual(times(records.predictions), [0], `draw ${draw}: tried again at ${due} ms`);
      assert.equal(stream.keptRows(), 0);
    }
  });

  it('opening rows the database did not take are written again on their own after 0.75 to 1.25 s, by the random source', async () => {
    for (const [draw, early, due] of draws) {
      const { stream, records, reading } = plantStreamHarness();
      stream.retryRandom = () => draw;
      records.refuseOpening = failedQuery('terminating connection due to administrator command', '57P01');
      const r = reading(T0, 10);
      const first = { timestamp: r.timestamp, values: Object.fromEntries(Object.entries(r.values).slice(0, 1)) };
      assert.equal(((await refused(stream.ingest('mill-1', [first], HTTP))) as AppError).code, 'STORAGE_UNAVAILABLE');
      records.refuseOpening = undefined;
      mock.timers.tick(early);
      await settle();
      assert.equal(records.opening.length, 0, `draw ${draw}: not written again before ${due} ms`);
      mock.timers.tick(due - early);
      await settle();
      assert.equal(records.opening.length, 1, `draw ${draw}: written again at ${due} ms`);
    }
  });
});

// Its call was refused 503 until the writer had stored the removed asset's rows, though none of them were its
// readings': the check was by asset id alone.
describe("manufacturing stream: an asset removed and made again while the writer keeps the removed one's predictions", () => {
  quietStreamWithMockTimers();

  it('is answered at once (its rows are another incarnation); the asset as it was is still refused 503', async () => {
    const { stream, records, reading, change } = plantStreamHarness();
    const made = '6f1c2b8e-0d7a-4c1e-9a53-2f9b7c1d4e50';
    // The writer keeps rows of the first incarnation (the database away when they were written).
    records.keepsPredictionsOf = (assetId, incarnation) => assetId === 'mill-1' && incarnation !== made;
    const error = await refused(stream.ingest('mill-1', [reading(T0, 10)], HTTP));
    assert.ok(error instanceof ReadingsKept, String(error));
    assert.equal(error.code, 'STORAGE_UNAVAILABLE');
    await change(undefined);
    await change({ incarnation: made });
    const summary = await stream.ingest('mill-1', [reading(T0, 10), reading(T0 + 1000, 11)], HTTP);
    assert.deepEqual([summary.accepted, summary.duplicates, summary.predictions], [2, 0, 2]);
  });
});

describe('manufacturing stream: an asset put again while its readings stream', () => {
  quietStreamWithMockTimers();

  it('of the same kind keeps its window: readings released before are duplicates, older ones late; its new tags and alarm rule apply', async () => {
    const { stream, records, reading, change, asset } = plantStreamHarness();
    const summary = await stream.ingest(
      'mill-1',
      [1, 2, 3].map((i) => reading(T0 + i * 1000, i)),
      HTTP,
    );
    assert.equal(summary.predictions, 3);
    // An alarm threshold tuned and a tag renamed: the same model, so the same window.
    await change({
      alarm: { raiseAt: 0.005, clearAt: 0.001, consecutive: 1 },
      sensors: asset.sensors.map((s) => (s.input === 'Torque [Nm]' ? { ...s, tag: 'torque' } : s)),
    });
    // A message delivered again, and one older than what was released: not taken as new.
    const again = await stream.ingest('mill-1', [reading(T0 + 3000, 3), reading(T0 + 500, 0)], HTTP);
    assert.deepEqual([again.accepted, again.duplicates, again.late], [0, 1, 1]);
    const next = await stream.ingest('mill-1', [{ timestamp: T0 + 4000, values: { torque: 41 } }], HTTP);
    assert.deepEqual([next.accepted, next.predictions, next.invalid], [1, 1, []]);
    assert.deepEqual(times(records.predictions), [1000, 2000, 3000, 4000]);
    assert.equal(records.predictions[3].inputs![3], 41, 'the torque, by its new tag');
    assert.equal(records.predictions[3].inputs![4], 3, 'the tool wear carried forward from before the change');
    // The new rule (raise at 0.005, at once) moved the alarm; the old one (0.5, twice) would not have.
    assert.deepEqual(
      records.alarms.map((a) => a.state),
      ['raised'],
    );
  });

  /** A mill whose failure alarm is raised, with the audit rows and the alarms published and streamed since. */
  async function raisedMill() {
    const harness = plantStreamHarness();
    const audited: AlarmEvent[] = [];
    const published: AlarmEvent[] = [];
    const streamed: StreamedAlarm[] = [];
    const audit = { fail: undefined as Error | undefined };
    harness.stream.auditAlarms((event) =>
      audit.fail ? Promise.reject(audit.fail) : (audited.push(event), Promise.resolve()),
    );
    harness.stream.onAlarm((event) => (published.push(event), Promise.resolve()));
    harness.stream.alarms.subscribe((event) => streamed.push(event));
    harness.engine.failure = () => 0.9;
    await harness.stream.ingest(
      'mill-1',
      [1, 2].map((i) => harness.reading(T0 + i * 1000, i)),
      HTTP,
    );
    assert.equal(harness.stream.status('mill-1').alarm.active, true);
    return { ...harness, audited, published, streamed, audit };
  }
  const ENGINE = { kind: 'turbofan-rul', alarm: { raiseAt: 40, clearAt: 60, consecutive: 3 } } as const;

  for (const [what, fields, reason] of [
    ['put as another kind', ENGINE, 'asset-kind-changed'],
    ['removed', undefined, 'asset-removed'],
  ] as const) {
    it(`${what}, closes the raised alarm its old model left: a cleared alarm with the reason, audited, published and streamed`, async () => {
      const { stream, records, change, audited, published, streamed } = await raisedMill();
      await change(fields);
      const { at, ...closed } = audited[1];
      assert.deepEqual(closed, closedMillAlarm('mill-1', reason));
      assert.deepEqual(published[1], audited[1]);
      assert.deepEqual(streamed[1], { ...audited[1], id: '2' });
      assert.deepEqual(
        records.alarms.map((a) => [a.state, a.metric, a.value, a.threshold, a.reason]),
        [
          ['raised', 'failure', 0.9, 0.5, null],
          ['cleared', 'failure', null, null, reason],
        ],
      );
      assert.equal(records.alarms[1].at.toISOString(), at);
      if (fields) assert.deepEqual(stream.status('mill-1').alarm, { active: false, since: undefined });
      // Put (back) as the kind that raised it, the asset starts clean: its alarm was closed.
      await change({ kind: 'machine-failure', alarm: { raiseAt: 0.5, clearAt: 0.3, consecutive: 2 } });
      assert.deepEqual(stream.status('mill-1').alarm, { active: false, since: undefined });
      assert.equal(records.alarms.length, 2, 'closed once');
    });
  }

  it('put as another kind while the audit trail is away: the PUT fails 503 and nothing is stored; closed with one audit row once it is back', async () => {
    const { records, change, audited, published, audit } = await raisedMill();
    audit.fail = new AppError('AUDIT_UNAVAILABLE', "the alarm's audit row cannot be written", { retryAfterSeconds: 1 });
    const error = await change(ENGINE).then(
      () => assert.fail('the PUT succeeded'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof AppError);
    assert.equal(error.code, 'AUDIT_UNAVAILABLE');
    assert.match(error.detail, /asset mill-1 is put, but the failure alarm its old model raised is not closed yet/);
    assert.deepEqual([records.alarms.length, published.length], [1, 1]);
    audit.fail = undefined;
    await change({}); // the PUT sent again, as its 503 asked
    assert.deepEqual(
      records.alarms.map((a) => [a.state, a.reason]),
      [
        ['raised', null],
        ['cleared', 'asset-kind-changed'],
      ],
    );
    assert.equal(audited.length, 2);
  });

  it('put as another kind while the database is away: 503 STORAGE_UNAVAILABLE; the close is tried again without a second audit row', async () => {
    const { stream, records, change, audited, published } = await raisedMill();
    stream.retryRandom = () => 0.5; // the wait unjittered: 1 s
    records.refuseAlarms = failedQuery('connection terminated', '08006');
    const error = await change(ENGINE).then(
      () => assert.fail('the PUT succeeded'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof AppError);
    assert.equal(error.code, 'STORAGE_UNAVAILABLE');
    assert.equal(published.length, 1, 'nothing published');
    records.refuseAlarms = undefined;
    mock.timers.tick(1000); // the close tried again
    await stream.alarmsClosed();
    assert.deepEqual(
      records.alarms.map((a) => [a.state, a.reason]),
      [
        ['raised', null],
        ['cleared', 'asset-kind-changed'],
      ],
    );
    assert.deepEqual(
      audited.map((a) => a.state),
      ['raised', 'cleared'],
      'audited once',
    );
  });

  // The close retries waited fixed times (1 s, 2 s, ... 30 s): the gateways sharing a database that came back retried
  // their closes in the same moment. Each wait is now 0.75 to 1.25 times as long, drawn from the random source.
  it('a close tried again waits a jittered time: from 0.75 to 1.25 times its wait, by the random source', async () => {
    for (const [draw, early, due] of [
      [0, 749, 750],
      [0.999, 1248, 1249.5],
    ] as const) {
      const { stream, records, change } = await raisedMill();
      stream.retryRandom = () => draw;
      records.refuseAlarms = failedQuery('connection terminated', '08006');
      await change(ENGINE).then(
        () => assert.fail('the PUT succeeded'),
        () => undefined,
      );
      records.refuseAlarms = undefined;
      mock.timers.tick(early);
      await stream.alarmsClosed();
      assert.equal(records.alarms.length, 1, `draw ${draw}: not tried again before ${due} ms`);
      mock.timers.tick(due - early);
      await stream.alarmsClosed();
      assert.deepEqual(
        records.alarms.map((a) => a.state),
        ['raised', 'cleared'],
        `draw ${draw}: tried again at ${due} ms`,
      );
    }
  });

  it("at boot, takes up an asset's last stored alarm on its kind's metric, and closes one raised on another (a seed file changed its kind)", async () => {
    for (const [metric, active] of [
      ['rul', false],
      ['failure', true],
    ] as const) {
      const { stream, records } = plantStreamHarness();
      const raised = {
        id: '7',
        assetId: 'mill-1',
        state: 'raised',
        metric,
        value: 12,
        threshold: 40,
        at: new Date(T0),
        site: 'plant-1',
        line: 'line-a',
        modelName: 'turbofan-rul',
        modelVersion: '1',
        reason: null,
      } as const;
      records.lastAlarms = () => Promise.resolve([raised]);
      await stream.onModuleInit();
      stream.onApplicationBootstrap();
      await stream.alarmsClosed();
      assert.equal(stream.status('mill-1').alarm.active, active, metric);
      assert.deepEqual(
        records.alarms.map((a) => [a.state, a.metric, a.site, a.line, a.modelName, a.reason]),
        active ? [] : [['cleared', 'rul', 'plant-1', 'line-a', 'turbofan-rul', 'asset-kind-changed']],
        metric,
      );
    }
  });

  it('removed and put again, starts over (as before)', async () => {
    const { stream, reading, change } = plantStreamHarness();
    await stream.ingest(
      'mill-1',
      [1, 2].map((i) => reading(T0 + i * 1000, i)),
      HTTP,
    );
    await change(undefined);
    await change({});
    const again = await stream.ingest('mill-1', [reading(T0 + 2000, 2)], HTTP);
    assert.deepEqual([again.accepted, again.duplicates], [1, 0]);
  });
});
