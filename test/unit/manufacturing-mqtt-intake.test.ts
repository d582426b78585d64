import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { Logger, LoggerService } from '@nestjs/common';
import { get } from 'sparkplug-payload';
import { QueryFailedError } from 'typeorm';
import { AppError } from '../../src/common/errors/app-error';
import { PlantMqttIntake, withCause } from '../../src/domains/manufacturing/mqtt/plant-mqtt-intake';
import { ReadingsKept } from '../../src/domains/manufacturing/plant-stream.service';
import type { PlantRecordsRepository } from '../../src/domains/manufacturing/records/plant-records.repository';
import { plantStreamHarness } from '../fixtures/plant-stream-harness';

const sparkplug = get('spBv1.0');
if (!sparkplug) throw new Error('sparkplug-payload lost spBv1.0');

const T0 = Date.now() - 3_600_000;
const TOPIC = 'factory/plant-1/line-b/mill-1/telemetry';
const TORQUE = 'Torque [Nm]';

/** A reading's values as Sparkplug B Double metrics, as an edge node reports every tag at once. */
function doubleMetrics(values: Record<string, unknown>) {
  return Object.entries(values).map(([name, value]) => ({ name, type: 'Double' as const, value: value as number }));
}

/** The intake over a real PlantStream (fake runtime and records): what a message counts as in gateway_mqtt_messages_total. */
function intakeHarness() {
  const harness = plantStreamHarness();
  const intake = new PlantMqttIntake(
    harness.stream,
    harness.registry,
    harness.records as unknown as PlantRecordsRepository,
  );
  const json = (readings: unknown) => intake.handle(TOPIC, Buffer.from(JSON.stringify(readings)));
  return { ...harness, intake, json };
}

describe('manufacturing MQTT intake: what a message counts as', () => {
  it('a message whose readings are all refused one by one is dead-lettered, not ingested', async () => {
    const { json, records, reading } = intakeHarness();
    const good = reading(T0, 10).values;
    const result = await json([
      { timestamp: T0, values: { ...good, [TORQUE]: 'high' } },
      { timestamp: T0 + 1000, values: { ...good, [TORQUE]: -1e9 } },
    ]);
    assert.deepEqual(result, { kind: 'json', outcome: 'dead-lettered' });
    assert.deepEqual(
      records.deadLetters.map((d) => [d.source, d.reason]),
      [
        ['mqtt', 'invalid-value'],
        ['mqtt', 'invalid-value'],
      ],
    );
    assert.deepEqual(records.predictions, []);
  });

  it('so is one whose readings all came too late', async () => {
    const { json, records, reading } = intakeHarness();
    assert.equal((await json(reading(T0 + 10_000, 10))).outcome, 'ingested');
    const late = await json([reading(T0, 11), reading(T0 + 1000, 12)]);
    assert.deepEqual(late, { kind: 'json', outcome: 'dead-lettered' });
    assert.deepEqual(
      records.deadLetters.map((d) => d.reason),
      ['late', 'late'],
    );
  });

  it('a Sparkplug DDATA whose readings are all refused is dead-lettered too', async () => {
    const { intake, records, reading } = intakeHarness();
    const metrics = Object.entries({ ...reading(T0, 10).values, [TORQUE]: -1e9 }).map(([name, value]) => ({
      name,
      type: 'Double' as const,
      value,
    }));
    const payload = Buffer.from(sparkplug.encodePayload({ timestamp: T0, seq: 1, metrics }));
    const result = await intake.handle('spBv1.0/plant-1/DDATA/edge-1/mill-1', payload);
    assert.equal(result.kind, 'sparkplug');
    assert.equal(result.outcome, 'dead-lettered');
    assert.deepEqual(
      records.deadLetters.map((d) => [d.source, d.reason]),
      [['sparkplug', 'invalid-value']],
    );
  });

  it('a message over MQTT_MAX_PAYLOAD_BYTES is dead-lettered unread, keeping only its first bytes; one at it is read', async () => {
    const harness = plantStreamHarness();
    const limit = 2048;
    const intake = new PlantMqttIntake(
      harness.stream,
      harness.registry,
      harness.records as unknown as PlantRecordsRepository,
      [],
      limit,
    );
    const records = harness.records;
    const readings = Array.from({ length: 120 }, (_, i) => harness.reading(T0 + i * 1000, 10 + i));
    const big = Buffer.from(JSON.stringify(readings));
    assert.ok(big.length > 3 * 4096, `${big.length} bytes`);
    assert.deepEqual(await intake.handle(TOPIC, big), { kind: 'json', outcome: 'dead-lettered' });
    assert.deepEqual(
      records.deadLetters.map((d) => [d.source, d.reason, d.assetId, d.detail]),
      [
        [
          'mqtt',
          'too-large',
          'mill-1',
          `a payload of ${big.length} bytes, over MQTT_MAX_PAYLOAD_BYTES (2048): not read`,
        ],
      ],
    );
    assert.equal(records.deadLetters[0].payload, big.toString('utf8', 0, 4096));
    assert.deepEqual(records.predictions, []);

    // Sparkplug: kept as base64, 4 KiB in all; no rebirth is asked (the node would send the same message again).
    const metrics = Array.from({ length: 200 }, (_, i) => ({ name: `tag ${i}`, type: 'Double' as const, value: i }));
    const payload = Buffer.from(sparkplug.encodePayload({ timestamp: T0, seq: 1, metrics }));
    assert.ok(payload.length > limit);
    const sparkplugResult = await intake.handle('spBv1.0/plant-1/DDATA/edge-1/mill-1', payload);
    assert.deepEqual(sparkplugResult, { kind: 'sparkplug', outcome: 'dead-lettered' });
    const letter = records.deadLetters[1];
    assert.deepEqual([letter.source, letter.reason, letter.assetId], ['sparkplug', 'too-large', 'mill-1']);
    assert.equal(letter.payload, `base64:${payload.toString('base64')}`.slice(0, 4096));

    // At the limit it is read as any other message.
    const fits = Buffer.from(JSON.stringify(harness.reading(T0 + 100_000, 10)));
    const padded = Buffer.concat([fits, Buffer.alloc(limit - fits.length, ' ')]);
    assert.deepEqual(await intake.handle(TOPIC, padded), { kind: 'json', outcome: 'ingested' });
    assert.equal(records.deadLetters.length, 2);
  });

  it('a message with readings taken, or only duplicates, is ingested', async () => {
    const { json, records, reading } = intakeHarness();
    const message = [reading(T0, 10), reading(T0 + 1000, 11)];
    assert.deepEqual(await json(message), { kind: 'json', outcome: 'ingested' });
    assert.deepEqual(await json(message), { kind: 'json', outcome: 'ingested' }, 'a redelivery');
    assert.equal(records.predictions.length, 2);
    assert.deepEqual(records.deadLetters, []);
  });

  it('two epoch times within one millisecond are one reading and its duplicate, as predictions are stored', async () => {
    // Keyed on the exact float, both were predicted; the second prediction, at the same millisecond, was
    // dropped by the database (ON CONFLICT DO NOTHING) while counted, and its alarm step taken.
    const { json, records, reading, stream } = intakeHarness();
    const first = reading(T0, 10);
    const message = [
      { ...first, timestamp: T0 + 0.2 },
      { ...reading(T0, 11), timestamp: T0 + 0.7 },
    ];
    assert.deepEqual(await json(message), { kind: 'json', outcome: 'ingested' });
    assert.deepEqual(
      records.predictions.map((p) => p.at.getTime()),
      [T0],
    );
    const { counts } = stream.status('mill-1');
    assert.deepEqual([counts.accepted, counts.duplicates, counts.predictions], [1, 1, 1]);
  });
});

describe('manufacturing MQTT intake: more than 10,000 readings in one message', () => {
  it('over Sparkplug B (a DDATA of metrics at as many times) is refused as a JSON message is, none taken', async () => {
    const { intake, records, reading, stream } = intakeHarness();
    const values = Object.entries(reading(T0, 10).values);
    const metrics = Array.from({ length: 10_001 }, (_, i) => ({
      name: values[i % values.length][0],
      type: 'Double' as const,
      value: values[i % values.length][1] as number,
      timestamp: T0 + i,
    }));
    const payload = Buffer.from(sparkplug.encodePayload({ timestamp: T0, seq: 1, metrics }));
    const result = await intake.handle('spBv1.0/plant-1/DDATA/edge-1/mill-1', payload);
    assert.equal(result.outcome, 'dead-lettered');
    assert.deepEqual(
      records.deadLetters.map((d) => [d.source, d.reason, d.assetId, d.detail]),
      [['sparkplug', 'malformed', 'mill-1', 'more than 10000 readings in one message']],
    );
    assert.deepEqual(records.predictions, []);
    assert.equal(stream.status('mill-1').counts.accepted, 0);
  });
});

describe('manufacturing MQTT intake: a JSON tag value that is null', () => {
  it('is no value, as a Sparkplug B null is: the message is ingested, the tags sent with it taken; all null is refused', async () => {
    const { json, records, reading } = intakeHarness();
    await json(reading(T0, 10));
    const next = reading(T0 + 1000, 11);
    assert.deepEqual(await json({ timestamp: T0 + 1000, values: { ...next.values, [TORQUE]: null } }), {
      kind: 'json',
      outcome: 'ingested',
    });
    assert.equal(records.deadLetters.length, 0);
    const [first, second] = records.predictions.map((p) => p.inputs!);
    assert.deepEqual(
      second.filter((v, i) => v !== first[i]),
      [11],
    );
    // Flat, with no value at all: refused, naming the null tag.
    assert.deepEqual(await json({ timestamp: T0 + 2000, [TORQUE]: null }), { kind: 'json', outcome: 'dead-lettered' });
    assert.deepEqual(
      records.deadLetters.map((d) => [d.source, d.reason]),
      [['mqtt', 'invalid-value']],
    );
    assert.match(records.deadLetters[0].detail, /^no usable value: Torque \[Nm\] is null \(no value\)/);
  });
});

// Sparkplug B 3.0: a historical metric is a past value (store and forward after a connection loss) and must not update
// the metric's current value. Fed to the live window, a backfill was behind the asset's newest reading: late.
describe('manufacturing MQTT intake: Sparkplug B is_historical metrics', () => {
  it('are taken as history: not dead-lettered as late, not fed to the live window, counted by reading', async () => {
    const { intake, records, reading, stream, metrics } = intakeHarness();
    const topic = 'spBv1.0/plant-1/DDATA/edge-1/mill-1';
    const live = (timestamp: number, seq: number, wear: number) =>
      intake.handle(
        topic,
        Buffer.from(
          sparkplug.encodePayload({ timestamp, seq, metrics: doubleMetrics(reading(timestamp, wear).values) }),
        ),
      );
    await live(T0 + 10_000, 1, 10);
    // The node's backlog, stamped behind the newest reading, with one live metric beside it.
    const backfill = [1000, 2000].flatMap((dt) =>
      doubleMetrics(reading(T0 + dt, 90).values).map((m) => ({ ...m, timestamp: T0 + dt, isHistorical: true })),
    );
    const changed = { name: 'Tool wear [min]', type: 'Double' as const, value: 11 };
    const payload = sparkplug.encodePayload({ timestamp: T0 + 11_000, seq: 2, metrics: [...backfill, changed] });
    assert.equal((await intake.handle(topic, Buffer.from(payload))).outcome, 'ingested');
    assert.equal(records.deadLetters.length, 0);
    const counts = stream.status('mill-1').counts;
    assert.deepEqual([counts.accepted, counts.late], [2, 0]);
    // The live window has the live values only: the backlog's tool wear of 90 is in no prediction.
    assert.deepEqual(
      records.predictions.map((p) => [p.at.getTime() - T0, p.inputs!.includes(90)]),
      [
        [10_000, false],
        [11_000, false],
      ],
    );
    const readings = await metrics.getSingleMetric('gateway_manufacturing_readings_total')!.get();
    assert.deepEqual(
      readings.values.filter((v) => v.labels.outcome === 'historical').map((v) => v.value),
      [2],
    );
  });
});

describe('manufacturing MQTT intake: a Sparkplug B Float or Double metric that is NaN', () => {
  it('is taken as no value (as is_null), its tag named in a dead letter, and the tags that changed with it are taken', async () => {
    const { intake, records, reading } = intakeHarness();
    const topic = 'spBv1.0/plant-1/DDATA/edge-1/mill-1';
    const metrics = doubleMetrics(reading(T0, 10).values);
    await intake.handle(topic, Buffer.from(sparkplug.encodePayload({ timestamp: T0, seq: 1, metrics })));
    // Report by exception: the torque sensor fails (NaN) as the tool wear changes.
    const changed = [
      { name: TORQUE, type: 'Double' as const, value: NaN },
      { name: 'Tool wear [min]', type: 'Double' as const, value: 11 },
    ];
    const payload = Buffer.from(sparkplug.encodePayload({ timestamp: T0 + 1000, seq: 2, metrics: changed }));
    const result = await intake.handle(topic, payload);
    assert.equal(result.outcome, 'dead-lettered');
    assert.deepEqual(
      records.deadLetters.map((d) => [d.source, d.reason, d.assetId, d.detail]),
      [
        [
          'sparkplug',
          'invalid-value',
          'mill-1',
          `value is NaN: ${TORQUE} at ${new Date(T0 + 1000).toISOString()}; taken as no value (as a null metric), ` +
            "the tag keeping its last value, and the message's other metrics taken",
        ],
      ],
    );
    assert.deepEqual(
      records.predictions.map((p) => p.at.getTime()),
      [T0, T0 + 1000],
    );
    // The new tool wear, the torque as it was.
    const [first, second] = records.predictions.map((p) => p.inputs!);
    assert.deepEqual(
      second.filter((v, i) => v !== first[i]),
      [11],
    );
  });
});

describe('manufacturing MQTT intake: a Sparkplug B Float or Double metric that is +Infinity or -Infinity', () => {
  it('is taken as no value, as NaN is: the tags that changed with it are taken, the infinite ones named', async () => {
    const { intake, records, reading } = intakeHarness();
    const topic = 'spBv1.0/plant-1/DDATA/edge-1/mill-1';
    const metrics = doubleMetrics(reading(T0, 10).values);
    await intake.handle(topic, Buffer.from(sparkplug.encodePayload({ timestamp: T0, seq: 1, metrics })));
    const [other] = Object.keys(reading(T0, 10).values).filter((n) => n !== TORQUE && n !== 'Tool wear [min]');
    const changed = [
      { name: TORQUE, type: 'Float' as const, value: Infinity },
      { name: other, type: 'Double' as const, value: -Infinity },
      { name: 'Tool wear [min]', type: 'Double' as const, value: 11 },
    ];
    const payload = Buffer.from(sparkplug.encodePayload({ timestamp: T0 + 1000, seq: 2, metrics: changed }));
    const result = await intake.handle(topic, payload);
    assert.equal(result.outcome, 'dead-lettered');
    const at = new Date(T0 + 1000).toISOString();
    assert.deepEqual(
      records.deadLetters.map((d) => [d.source, d.reason, d.assetId, d.detail]),
      [
        [
          'sparkplug',
          'invalid-value',
          'mill-1',
          `value is Infinity: ${TORQUE} at ${at}; value is -Infinity: ${other} at ${at}; taken as no value ` +
            "(as a null metric), the tag keeping its last value, and the message's other metrics taken",
        ],
      ],
    );
    assert.deepEqual(
      records.predictions.map((p) => p.at.getTime()),
      [T0, T0 + 1000],
    );
    const [first, second] = records.predictions.map((p) => p.inputs!);
    assert.deepEqual(
      second.filter((v, i) => v !== first[i]),
      [11],
    );
  });
});

// As a JSON reading whose tag values are all null is refused naming them: such a DDATA gave no reading and no word.
describe('manufacturing MQTT intake: a Sparkplug B DDATA with metrics but not one usable value', () => {
  const topic = 'spBv1.0/plant-1/DDATA/edge-1/mill-1';
  const tags = (names: string[]) => `none of the asset's other tags has a usable value (its tags: ${names.join(', ')})`;

  it('all null is dead-lettered naming its nulls', async () => {
    const { intake, records, reading } = intakeHarness();
    const names = Object.keys(reading(T0, 10).values);
    const nulls = names.map((name) => ({ name, type: 'Double' as const, value: null, isNull: true }));
    const payload = Buffer.from(sparkplug.encodePayload({ timestamp: T0, seq: 1, metrics: nulls }));
    assert.equal((await intake.handle(topic, payload)).outcome, 'dead-lettered');
    assert.deepEqual(
      records.deadLetters.map((d) => [d.source, d.reason, d.assetId, d.detail]),
      [
        [
          'sparkplug',
          'invalid-value',
          'mill-1',
          `no usable value: ${names.join(', ')} are null (no value); ${tags(names)}`,
        ],
      ],
    );
    assert.deepEqual(records.predictions, []);
  });

  it('null or infinite (taken as no value) is one letter naming each; a metric of no tag of the asset changes nothing', async () => {
    const { intake, records, reading } = intakeHarness();
    const names = Object.keys(reading(T0, 10).values);
    const metrics = [
      { name: TORQUE, type: 'Double' as const, value: null, isNull: true },
      { name: 'Tool wear [min]', type: 'Float' as const, value: Infinity },
      { name: names[0], type: 'Double' as const, value: -Infinity },
      { name: 'Operator', type: 'Double' as const, value: null, isNull: true },
    ];
    const payload = Buffer.from(sparkplug.encodePayload({ timestamp: T0, seq: 1, metrics }));
    assert.equal((await intake.handle(topic, payload)).outcome, 'dead-lettered');
    assert.deepEqual(
      records.deadLetters.map((d) => [d.reason, d.detail]),
      [
        [
          'invalid-value',
          `no usable value: ${TORQUE} is null (no value); Tool wear [min] is Infinity (taken as no value); ` +
            `${names[0]} is -Infinity (taken as no value); ${tags(names)}`,
        ],
      ],
    );
  });

  it('all null is refused in the same words as a JSON reading whose tag values are all null', async () => {
    const { intake, json, records, reading } = intakeHarness();
    const names = Object.keys(reading(T0, 10).values);
    const nulls = names.map((name) => ({ name, type: 'Double' as const, value: null, isNull: true }));
    await intake.handle(topic, Buffer.from(sparkplug.encodePayload({ timestamp: T0, seq: 1, metrics: nulls })));
    await json({ timestamp: T0 + 1000, values: Object.fromEntries(names.map((name) => [name, null])) });
    assert.deepEqual(
      records.deadLetters.map((d) => [d.source, d.reason, d.detail]),
      ['sparkplug', 'mqtt'].map((source) => [
        source,
        'invalid-value',
        `no usable value: ${names.join(', ')} are null (no value); ${tags(names)}`,
      ]),
    );
  });

  it('only historical metrics are history, not such a message: counted, no dead letter', async () => {
    const { intake, records, reading, metrics } = intakeHarness();
    const backfill = doubleMetrics(reading(T0, 10).values).map((m) => ({ ...m, timestamp: T0, isHistorical: true }));
    const payload = Buffer.from(sparkplug.encodePayload({ timestamp: T0 + 1000, seq: 1, metrics: backfill }));
    await intake.handle(topic, payload);
    assert.deepEqual(records.deadLetters, []);
    const readings = await metrics.getSingleMetric('gateway_manufacturing_readings_total')!.get();
    assert.deepEqual(
      readings.values.filter((v) => v.labels.outcome === 'historical').map((v) => v.value),
      [1],
    );
  });
});

// Dropped with no word before: an edge node whose tag's datatype did not match (a String torque) fed the asset its
// last value for good, and nobody was told.
describe("manufacturing MQTT intake: a Sparkplug B metric of an asset's tag that is not a numeric reading", () => {
  it("is dead-lettered naming the tag and why, the message's other metrics taken; a null or another metric is not", async () => {
    const { intake, records, reading } = intakeHarness();
    const topic = 'spBv1.0/plant-1/DDATA/edge-1/mill-1';
    const metrics = doubleMetrics(reading(T0, 10).values);
    await intake.handle(topic, Buffer.from(sparkplug.encodePayload({ timestamp: T0, seq: 1, metrics })));
    const changed = [
      { name: TORQUE, type: 'String' as const, value: '40.5' },
      { name: 'Tool wear [min]', type: 'Double' as const, value: 11 },
      { name: 'Operator', type: 'String' as const, value: 'ann' },
      { name: 'Process temperature [K]', type: 'Double' as const, value: null, isNull: true },
    ];
    const payload = Buffer.from(sparkplug.encodePayload({ timestamp: T0 + 1000, seq: 2, metrics: changed }));
    assert.equal((await intake.handle(topic, payload)).outcome, 'dead-lettered');
    assert.deepEqual(
      records.deadLetters.map((d) => [d.source, d.reason, d.assetId, d.detail]),
      [
        [
          'sparkplug',
          'invalid-value',
          'mill-1',
          `not a numeric reading: ${TORQUE} (String is not a numeric reading); taken as no value, the tag keeping its ` +
            "last value, and the message's other metrics taken",
        ],
      ],
    );
    const [first, second] = records.predictions.map((p) => p.inputs!);
    assert.deepEqual(
      second.filter((v, i) => v !== first[i]),
      [11],
    );
  });
});

// Read as the last metric given it, a DATA's value went to another tag with no word: here the process temperature
// fed the model as the air temperature, plausible, and predicted.
describe('manufacturing MQTT intake: a Sparkplug B alias the birth gave two metrics', () => {
  it('is not read: dead-lettered naming the alias and its metrics, no rebirth asked, the other metrics taken', async () => {
    const { intake, records, reading } = intakeHarness();
    const names = Object.keys(reading(T0, 10).values);
    const air = names.find((n) => n.startsWith('Air temperature'))!;
    const process = names.find((n) => n.startsWith('Process temperature'))!;
    const born = Object.entries(reading(T0, 10).values).map(([name, value], i) => ({
      name,
      alias: name === process ? names.indexOf(air) + 1 : i + 1,
      type: 'Double' as const,
      value: value as number,
    }));
    const encode = (seq: number, metrics: unknown[]) =>
      Buffer.from(sparkplug.encodePayload({ timestamp: T0 + seq * 1000, seq, metrics } as never));
    await intake.handle('spBv1.0/plant-1/NBIRTH/edge-1', encode(0, [{ name: 'bdSeq', type: 'Int64', value: 0 }]));
    await intake.handle('spBv1.0/plant-1/DBIRTH/edge-1/mill-1', encode(1, born));
    const changed = [
      { alias: names.indexOf(air) + 1, type: 'Double', value: 310 },
      { alias: names.indexOf('Tool wear [min]') + 1, type: 'Double', value: 11 },
    ];
    const result = await intake.handle('spBv1.0/plant-1/DDATA/edge-1/mill-1', encode(2, changed));
    assert.deepEqual(result, { kind: 'sparkplug', outcome: 'dead-lettered', rebirth: undefined });
    assert.deepEqual(
      records.deadLetters.map((d) => [d.source, d.reason, d.assetId, d.detail]),
      [
        [
          'sparkplug',
          'unknown-alias',
          'mill-1',
          `aliases ${names.indexOf(air) + 1} (${air}, ${process}) were each given to more than one metric in the ` +
            "birth certificate; their values are not read (each metric needs its own alias), the message's other " +
            'metrics taken',
        ],
      ],
    );
    const [first, second] = records.predictions.map((p) => p.inputs!);
    assert.deepEqual(
      second.filter((v, i) => v !== first[i]),
      [11],
    );
  });
});

describe('manufacturing MQTT intake: a time in seconds', () => {
  it('over JSON is dead-lettered naming it (not a reading of January 1970), and the rest of the message taken', async () => {
    const { json, records, reading } = intakeHarness();
    const seconds = Math.floor(T0 / 1000);
    const result = await json([{ ...reading(T0, 10), timestamp: seconds }, reading(T0, 11)]);
    assert.deepEqual(result, { kind: 'json', outcome: 'dead-lettered' });
    assert.deepEqual(
      records.deadLetters.map((d) => [d.reason, d.detail]),
      [
        [
          'malformed',
          `[0] timestamp ${seconds} reads as ${new Date(seconds).toISOString()}; epoch milliseconds expected ` +
            '(this looks like seconds; numbers before 2000-01-01 or from 3000-01-01 on are refused)',
        ],
      ],
    );
    assert.deepEqual(
      records.predictions.map((p) => p.at.getTime()),
      [T0],
    );
  });

  it('over Sparkplug B (whose times are epoch milliseconds too) is dead-lettered the same way', async () => {
    const { intake, records, reading } = intakeHarness();
    const seconds = Math.floor(T0 / 1000);
    const metrics = doubleMetrics(reading(T0, 10).values);
    const payload = Buffer.from(sparkplug.encodePayload({ timestamp: seconds, seq: 1, metrics }));
    const result = await intake.handle('spBv1.0/plant-1/DDATA/edge-1/mill-1', payload);
    assert.equal(result.outcome, 'dead-lettered');
    assert.deepEqual(
      records.deadLetters.map((d) => [d.source, d.reason, d.assetId]),
      [['sparkplug', 'malformed', 'mill-1']],
    );
    assert.match(
      records.deadLetters[0].detail,
      new RegExp(`^timestamp ${seconds} reads as 1970-.*this looks like seconds`),
    );
    assert.deepEqual(records.predictions, []);
  });
});

describe('manufacturing MQTT intake: a message whose ingest fails (ingest-failed)', () => {
  const errors: unknown[] = [];
  beforeEach(() => {
    errors.length = 0;
    const quiet = () => undefined;
    const logger: LoggerService = { log: quiet, warn: quiet, error: (message: unknown) => errors.push(message) };
    Logger.overrideLogger(logger);
  });
  afterEach(() => {
    Logger.overrideLogger(false);
  });

  /** A prediction the database refuses for its content: the stream throws it as it is (a bug, not kept). */
  const refusedPrediction = () =>
    new QueryFailedError('INSERT ...', [], Object.assign(new Error('value out of range for type'), { code: '22003' }));
  const ingestFailed = <T extends { reason: string }>(letters: T[]) =>
    letters.filter((d) => d.reason === 'ingest-failed');

  it('names the readings not ingested, says the others are taken, and a redelivery counts none of them twice', async () => {
    const { json, records, stream, reading } = intakeHarness();
    assert.equal((await json([reading(T0, 10)])).outcome, 'ingested');
    records.refusePredictions = refusedPrediction();
    const good = reading(T0 + 1000, 11).values;
    const message = [
      reading(T0, 10),
      { timestamp: T0 + 1000, values: { ...good, [TORQUE]: 'high' } },
      reading(T0 + 2000, 12),
    ];
    const result = await json(message);
    assert.equal(result.outcome, 'dead-lettered', 'acknowledged: what it held is taken or kept in dead letters');
    const [letter, ...more] = ingestFailed(records.deadLetters);
    assert.equal(more.length, 0, JSON.stringify(records.deadLetters));
    assert.equal(letter.source, 'mqtt');
    assert.equal(letter.channel, TOPIC);
    assert.equal(letter.assetId, 'mill-1');
    assert.match(letter.detail, /1 accepted/);
    assert.match(letter.detail, /1 duplicate/);
    assert.match(letter.detail, /SQLSTATE 22003/);
    assert.doesNotMatch(letter.detail, /out of range/, "the database's own words are logged, not served");
    const payload = JSON.parse(letter.payload) as {
      readings: number;
      ingested: { accepted: number; duplicates: number };
      notIngested: Array<{ timestamp: string; outcome: string; reason: string; values: Record<string, unknown> }>;
    };
    assert.equal(payload.readings, 3);
    assert.deepEqual(payload.ingested, { accepted: 1, duplicates: 1 });
    assert.equal(payload.notIngested.length, 1);
    assert.equal(payload.notIngested[0].timestamp, new Date(T0 + 1000).toISOString());
    assert.equal(payload.notIngested[0].outcome, 'invalid');
    assert.match(payload.notIngested[0].reason, /Torque/);
    assert.equal(payload.notIngested[0].values[TORQUE], 'high');
    assert.ok(
      errors.some((e) => {
        const error = (e as { error?: unknown }).error;
        return typeof error === 'string' && error.includes('out of range') && error.includes('\n    at ');
      }),
      JSON.stringify(errors),
    );
    // Sent again (a redelivery, or an operator replaying it): the accepted readings are duplicates.
    records.refusePredictions = undefined;
    assert.equal((await json(message)).outcome, 'dead-lettered');
    const counts = stream.status('mill-1').counts;
    assert.equal(counts.accepted, 2, 'each accepted reading counted once');
    assert.equal(counts.duplicates, 3);
  });

  it("keeps the message's malformed items' dead letters too", async () => {
    const { json, records, reading } = intakeHarness();
    records.refusePredictions = refusedPrediction();
    await json([reading(T0, 10), { values: {} }]);
    assert.deepEqual(records.deadLetters.map((d) => d.reason).sort(), ['ingest-failed', 'malformed']);
  });

  it('stays within 4 KiB and valid JSON for a message of 10,000 readings, counting those it cannot name', async () => {
    const { json, records, reading } = intakeHarness();
    records.refusePredictions = refusedPrediction();
    const message = Array.from({ length: 10_000 }, (_, i) => {
      const r = reading(T0 + i * 10, i % 200);
      return i % 2 === 0 ? r : { ...r, values: { ...r.values, [TORQUE]: 'high' } };
    });
    await json(message);
    const [letter] = ingestFailed(records.deadLetters);
    assert.ok(letter.payload.length <= 4096, String(letter.payload.length));
    assert.ok(letter.detail.length <= 1000);
    const payload = JSON.parse(letter.payload) as {
      ingested: { accepted: number };
      notIngested: unknown[];
      notNamed: { readings: number; from: string; to: string };
    };
    assert.equal(payload.ingested.accepted, 5000);
    assert.ok(payload.notIngested.length > 0);
    assert.equal(payload.notIngested.length + payload.notNamed.readings, 5000);
    assert.equal(payload.notNamed.to, new Date(T0 + 9999 * 10).toISOString());
  });

  it('nothing ingested (the asset gone before its readings were taken): the message kept, as other MQTT dead letters keep it', async () => {
    const { json, records, registry, reading } = intakeHarness();
    registry.get = () => {
      throw new AppError('NOT_FOUND', 'no asset mill-1');
    };
    const message = [reading(T0, 10), reading(T0 + 1000, 11)];
    assert.equal((await json(message)).outcome, 'dead-lettered');
    const [letter] = ingestFailed(records.deadLetters);
    assert.match(letter.detail, /no reading of the message was ingested/);
    assert.match(letter.detail, /no asset mill-1/);
    assert.equal(letter.payload, JSON.stringify(message));
  });
});

describe('manufacturing MQTT intake: Sparkplug B sequence numbers', () => {
  const DEFAULT_TOPICS = ['spBv1.0/+/NBIRTH/+', 'spBv1.0/+/NDATA/+', 'spBv1.0/+/+/+/+'];
  const message = (seq: number, metrics: Array<{ name: string; type: 'Double' | 'Int64'; value: number }>) =>
    Buffer.from(sparkplug.encodePayload({ timestamp: T0 + seq * 1000, seq, metrics }));

  function born(subscriptions: string[]) {
    const harness = plantStreamHarness();
    const intake = new PlantMqttIntake(
      harness.stream,
      harness.registry,
      harness.records as unknown as PlantRecordsRepository,
      subscriptions,
    );
    const values = (seq: number) =>
      Object.entries(harness.reading(T0, seq).values).map(([name, value]) => ({
        name,
        type: 'Double' as const,
        value: value as number,
      }));
    const ddata = (seq: number) => intake.handle('spBv1.0/plant-1/DDATA/edge-1/mill-1', message(seq, values(seq)));
    return { ...harness, intake, ddata, values };
  }

  it('a gap asks the node to rebirth, and the message that showed it is ingested all the same', async () => {
    const { intake, ddata, records } = born(DEFAULT_TOPICS);
    await intake.handle('spBv1.0/plant-1/NBIRTH/edge-1', message(0, [{ name: 'bdSeq', type: 'Int64', value: 0 }]));
    assert.deepEqual(await ddata(1), { kind: 'sparkplug', outcome: 'ingested', rebirth: undefined });
    const ndata = await intake.handle(
      'spBv1.0/plant-1/NDATA/edge-1',
      message(2, [{ name: 'up', type: 'Int64', value: 1 }]),
    );
    assert.equal(ndata.rebirth, undefined, 'NDATA counts in the sequence');
    assert.deepEqual(await ddata(3), { kind: 'sparkplug', outcome: 'ingested', rebirth: undefined });
    assert.deepEqual(await ddata(5), {
      kind: 'sparkplug',
      outcome: 'ingested',
      rebirth: { group: 'plant-1', edgeNode: 'edge-1', reason: 'sequence-gap' },
    });
    assert.equal((await ddata(6)).rebirth, undefined);
    assert.equal(records.predictions.length, 4);
  });

  it("the rebirth's DBIRTH gives the value of the missed message, though its metric is stamped when it changed", async () => {
    const { intake, values, records, model } = born(DEFAULT_TOPICS);
    const torque = model.sensorSources.indexOf(TORQUE);
    const birth = (
      seq: number,
      at: number,
      metrics: Array<{ name: string; type: 'Double'; value: number; timestamp: number }>,
    ) => Buffer.from(sparkplug.encodePayload({ timestamp: at, seq, metrics }));
    const wear = (seq: number, at: number, value: number) =>
      intake.handle(
        'spBv1.0/plant-1/DDATA/edge-1/mill-1',
        Buffer.from(
          sparkplug.encodePayload({
            timestamp: at,
            seq,
            metrics: [{ name: 'Tool wear [min]', type: 'Double', value, timestamp: at }],
          }),
        ),
      );
    const nbirth = (bdSeq: number, at: number) =>
      intake.handle(
        'spBv1.0/plant-1/NBIRTH/edge-1',
        Buffer.from(
          sparkplug.encodePayload({ timestamp: at, seq: 0, metrics: [{ name: 'bdSeq', type: 'Int64', value: bdSeq }] }),
        ),
      );
    await nbirth(0, T0);
    const first = values(1).map((m) => ({ ...m, timestamp: T0 }));
    await intake.handle('spBv1.0/plant-1/DBIRTH/edge-1/mill-1', birth(1, T0, first));
    // Seq 2, torque 50 at T0+2s, is lost; seq 3, another tag at T0+3s, shows the gap.
    const gap = await wear(3, T0 + 3000, 7);
    assert.equal(gap.rebirth?.reason, 'sequence-gap');
    // The rebirth: every current value, each metric stamped with when it last changed (torque at T0+2s).
    await nbirth(1, T0 + 4000);
    const current = first.map((m) =>
      m.name === TORQUE
        ? { ...m, value: 50, timestamp: T0 + 2000 }
        : m.name === 'Tool wear [min]'
          ? { ...m, value: 7, timestamp: T0 + 3000 }
          : m,
    );
    const rebirth = await intake.handle('spBv1.0/plant-1/DBIRTH/edge-1/mill-1', birth(1, T0 + 4000, current));
    assert.equal(rebirth.outcome, 'ingested');
    await wear(2, T0 + 5000, 8); // by exception: torque is carried forward
    assert.deepEqual(
      records.deadLetters.map((d) => d.reason),
      [],
      'no value of the rebirth refused as late',
    );
    const last = records.predictions.at(-1)!;
    assert.equal(last.at.getTime(), T0 + 5000);
    assert.equal(last.inputs?.[torque], 50);
    const reborn = records.predictions.find((p) => p.at.getTime() === T0 + 4000);
    assert.equal(
      reborn?.inputs?.[torque],
      50,
      'the birth is one reading, at its publishing time, with every current value',
    );
  });

  it("no rebirth for a gap when the subscriptions leave some of the node's messages out (NDATA, say)", async () => {
    const { intake, ddata } = born(['spBv1.0/+/NBIRTH/+', 'spBv1.0/+/+/+/+']);
    await intake.handle('spBv1.0/plant-1/NBIRTH/edge-1', message(0, [{ name: 'bdSeq', type: 'Int64', value: 0 }]));
    assert.equal((await ddata(1)).rebirth, undefined);
    assert.equal((await ddata(3)).rebirth, undefined);
  });

  // Before, a seq past 255 read as a gap: the node was asked to rebirth, and its next message, numbered on from the
  // last good one, read as a gap again.
  it('a seq past 255 is dead-lettered as malformed naming it, asking no rebirth; the sequence goes on as before it', async () => {
    const { intake, ddata, records } = born(DEFAULT_TOPICS);
    await intake.handle('spBv1.0/plant-1/NBIRTH/edge-1', message(0, [{ name: 'bdSeq', type: 'Int64', value: 0 }]));
    assert.equal((await ddata(1)).rebirth, undefined);
    assert.deepEqual(await ddata(300), { kind: 'sparkplug', outcome: 'dead-lettered' });
    assert.deepEqual(
      records.deadLetters.map((d) => [d.source, d.reason, d.assetId, d.detail]),
      [
        [
          'sparkplug',
          'malformed',
          'mill-1',
          'malformed Sparkplug B payload: payload seq 300 is out of range (0 to 255)',
        ],
      ],
    );
    assert.deepEqual(await ddata(2), { kind: 'sparkplug', outcome: 'ingested', rebirth: undefined });
    assert.equal(records.predictions.length, 2, 'the malformed message gave none');
  });

  it('a birth with a seq past 255 is not taken; a death is, dead-lettered, its seq not followed', async () => {
    const { intake, ddata, records } = born(DEFAULT_TOPICS);
    const nbirth = await intake.handle(
      'spBv1.0/plant-1/NBIRTH/edge-1',
      message(256, [{ name: 'bdSeq', type: 'Int64', value: 0 }]),
    );
    assert.deepEqual(nbirth, { kind: 'sparkplug', outcome: 'dead-lettered' });
    // Asked to rebirth as a node whose NBIRTH was never seen, not for the seq.
    assert.equal((await ddata(0)).rebirth?.reason, 'no-birth');
    await intake.handle('spBv1.0/plant-1/NBIRTH/edge-1', message(0, [{ name: 'bdSeq', type: 'Int64', value: 1 }]));
    const ddeath = await intake.handle('spBv1.0/plant-1/DDEATH/edge-1/mill-1', message(999, []));
    assert.deepEqual(ddeath, { kind: 'sparkplug', outcome: 'ignored', rebirth: undefined });
    assert.deepEqual(
      records.deadLetters.map((d) => [d.reason, d.detail]),
      [256, 999].map((seq) => [
        'malformed',
        `malformed Sparkplug B payload: payload seq ${seq} is out of range (0 to 255)`,
      ]),
    );
  });
});

describe('manufacturing MQTT intake: a Sparkplug B edge node whose NBIRTH the gateway never saw', () => {
  const DEFAULT_TOPICS = ['spBv1.0/+/NBIRTH/+', 'spBv1.0/+/NDATA/+', 'spBv1.0/+/+/+/+'];
  const message = (seq: number, metrics: Array<{ name: string; type: 'Double' | 'Int64'; value: number }>) =>
    Buffer.from(sparkplug.encodePayload({ timestamp: T0 + seq * 1000, seq, metrics }));

  function unborn(subscriptions: string[]) {
    const harness = plantStreamHarness();
    const intake = new PlantMqttIntake(
      harness.stream,
      harness.registry,
      harness.records as unknown as PlantRecordsRepository,
      subscriptions,
    );
    const values = (seq: number) =>
      Object.entries(harness.reading(T0, seq).values).map(([name, value]) => ({
        name,
        type: 'Double' as const,
        value: value as number,
      }));
    const ddata = (seq: number) => intake.handle('spBv1.0/plant-1/DDATA/edge-1/mill-1', message(seq, values(seq)));
    return { ...harness, intake, ddata, values };
  }
  const noBirth = { group: 'plant-1', edgeNode: 'edge-1', reason: 'no-birth' };

  it('its DDATA by name asks it to rebirth, and is ingested all the same', async () => {
    const { ddata, records } = unborn(DEFAULT_TOPICS);
    assert.deepEqual(await ddata(7), { kind: 'sparkplug', outcome: 'ingested', rebirth: noBirth });
    assert.equal(records.predictions.length, 1);
    assert.deepEqual(records.deadLetters, []);
  });

  it('so do its NDATA and its DBIRTH; once its NBIRTH comes, no more', async () => {
    const { intake, ddata, values } = unborn(DEFAULT_TOPICS);
    const ndata = await intake.handle(
      'spBv1.0/plant-1/NDATA/edge-1',
      message(3, [{ name: 'up', type: 'Int64', value: 1 }]),
    );
    assert.deepEqual(ndata, { kind: 'sparkplug', outcome: 'ignored', rebirth: noBirth });
    const dbirth = await intake.handle('spBv1.0/plant-1/DBIRTH/edge-1/mill-1', message(4, values(4)));
    assert.deepEqual(dbirth.rebirth, noBirth, 'a DBIRTH alone is no NBIRTH');
    await intake.handle('spBv1.0/plant-1/NBIRTH/edge-1', message(0, [{ name: 'bdSeq', type: 'Int64', value: 0 }]));
    assert.equal((await ddata(1)).rebirth, undefined);
    const death = await intake.handle(
      'spBv1.0/plant-1/NDEATH/edge-1',
      Buffer.from(sparkplug.encodePayload({ metrics: [{ name: 'bdSeq', type: 'Int64', value: 0 }] })),
    );
    assert.equal(death.rebirth, undefined, 'a death asks for nothing');
  });

  it('is not asked when the subscriptions do not bring its NBIRTH (a rebirth could not be seen)', async () => {
    const { ddata } = unborn(['spBv1.0/+/DDATA/+/+']);
    assert.equal((await ddata(7)).rebirth, undefined);
  });
});

describe('manufacturing MQTT intake: an empty payload (a retained message cleared)', () => {
  const EMPTY = Buffer.alloc(0);
  const TOPICS = ['spBv1.0/+/NBIRTH/+', 'spBv1.0/+/NDATA/+', 'spBv1.0/+/+/+/+'];

  it('on a telemetry topic is ignored, not dead-lettered as malformed JSON', async () => {
    const { intake, records, stream } = intakeHarness();
    assert.deepEqual(await intake.handle(TOPIC, EMPTY), { kind: 'json', outcome: 'ignored' });
    assert.deepEqual(await intake.handle('factory/plant-1/line-b/no-such-asset/telemetry', EMPTY), {
      kind: 'json',
      outcome: 'ignored',
    });
    assert.deepEqual(await intake.handle('factory/plant-1/line-b/mill-1/other', EMPTY), {
      kind: 'unknown',
      outcome: 'ignored',
    });
    assert.deepEqual(records.deadLetters, []);
    assert.equal(stream.status('mill-1').counts.received, 0);
  });

  it('on a Sparkplug birth or DATA topic is no message of the node: its aliases and sequence stand, and no rebirth is asked', async () => {
    const harness = plantStreamHarness();
    const { records } = harness;
    const intake = new PlantMqttIntake(
      harness.stream,
      harness.registry,
      harness.records as unknown as PlantRecordsRepository,
      TOPICS,
    );
    const named = Object.entries(harness.reading(T0, 10).values).map(([name, value], i) => ({
      name,
      alias: i + 1,
      type: 'Double' as const,
      value: value as number,
    }));
    const encode = (seq: number, metrics: unknown[]) =>
      Buffer.from(sparkplug.encodePayload({ timestamp: T0 + seq * 1000, seq, metrics } as never));
    await intake.handle('spBv1.0/plant-1/NBIRTH/edge-1', encode(0, [{ name: 'bdSeq', type: 'Int64', value: 0 }]));
    await intake.handle('spBv1.0/plant-1/DBIRTH/edge-1/mill-1', encode(1, named));
    for (const type of ['NBIRTH', 'NDATA']) {
      const topic = `spBv1.0/plant-1/${type}/edge-1`;
      assert.deepEqual(await intake.handle(topic, EMPTY), { kind: 'sparkplug', outcome: 'ignored' }, topic);
    }
    for (const type of ['DBIRTH', 'DDATA', 'DCMD']) {
      const topic = `spBv1.0/plant-1/${type}/edge-1/mill-1`;
      assert.deepEqual(await intake.handle(topic, EMPTY), { kind: 'sparkplug', outcome: 'ignored' }, topic);
    }
    // The next DATA by alias alone, the next seq: no gap, every alias known.
    const byAlias = named.map(({ alias, type, value }) => ({ alias, type, value: value + 1 }));
    const next = await intake.handle('spBv1.0/plant-1/DDATA/edge-1/mill-1', encode(2, byAlias));
    assert.deepEqual(next, { kind: 'sparkplug', outcome: 'ingested', rebirth: undefined });
    assert.deepEqual(records.deadLetters, []);
    assert.deepEqual(
      records.predictions.map((p) => p.at.getTime()),
      [T0 + 1000, T0 + 2000],
    );
  });

  it('on a death topic is still a death: the node is asked to rebirth when its next DATA uses an alias', async () => {
    const harness = plantStreamHarness();
    const intake = new PlantMqttIntake(
      harness.stream,
      harness.registry,
      harness.records as unknown as PlantRecordsRepository,
      TOPICS,
    );
    const encode = (seq: number, metrics: unknown[]) =>
      Buffer.from(sparkplug.encodePayload({ timestamp: T0 + seq * 1000, seq, metrics } as never));
    await intake.handle('spBv1.0/plant-1/NBIRTH/edge-1', encode(0, [{ name: 'bdSeq', type: 'Int64', value: 0 }]));
    await intake.handle(
      'spBv1.0/plant-1/DBIRTH/edge-1/mill-1',
      encode(1, [{ name: TORQUE, alias: 1, type: 'Double', value: 40 }]),
    );
    assert.equal((await intake.handle('spBv1.0/plant-1/NDEATH/edge-1', EMPTY)).outcome, 'ignored');
    const after = await intake.handle(
      'spBv1.0/plant-1/DDATA/edge-1/mill-1',
      encode(2, [{ alias: 1, type: 'Double', value: 41 }]),
    );
    assert.equal(after.rebirth?.group, 'plant-1');
  });
});

describe('manufacturing MQTT intake: a Sparkplug B host STATE', () => {
  it('is ignored, not dead-lettered as a malformed Sparkplug payload (it is JSON)', async () => {
    const { intake, records } = intakeHarness();
    const result = await intake.handle('spBv1.0/STATE/scada-primary', Buffer.from('{"online":true,"timestamp":1}'));
    assert.deepEqual(result, { kind: 'sparkplug', outcome: 'ignored' });
    assert.deepEqual(records.deadLetters, []);
  });
});

describe('manufacturing MQTT intake: the log line of a message left unacknowledged', () => {
  it("names the database's own error behind a kept reading, with its code", () => {
    const driver = Object.assign(new Error('timeout exceeded when trying to connect'), { code: undefined });
    const pgError = Object.assign(new Error('canceling statement due to lock timeout'), { code: '55P03' });
    const kept = (cause: unknown) =>
      new ReadingsKept('STORAGE_UNAVAILABLE', 'the predictions could not be stored yet', { cause });
    assert.equal(
      withCause(kept(pgError)),
      'AppError: STORAGE_UNAVAILABLE: the predictions could not be stored yet ' +
        '(cause: Error: canceling statement due to lock timeout, code 55P03)',
    );
    assert.equal(
      withCause(kept(driver)),
      'AppError: STORAGE_UNAVAILABLE: the predictions could not be stored yet ' +
        '(cause: Error: timeout exceeded when trying to connect)',
    );
    assert.equal(withCause(new Error('plain')), 'Error: plain');
  });
});
