import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { get } from 'sparkplug-payload';
import { PlantMqttIntake } from '../../src/domains/manufacturing/mqtt/plant-mqtt-intake';
import type { PlantRecordsRepository } from '../../src/domains/manufacturing/records/plant-records.repository';
import { plantStreamHarness } from '../fixtures/plant-stream-harness';

const sparkplug = get('spBv1.0');
if (!sparkplug) throw new Error('sparkplug-payload lost spBv1.0');

const T0 = Date.now() - 3_600_000;
const TOPIC = 'factory/plant-1/line-b/mill-1/telemetry';
const TORQUE = 'Torque [Nm]';

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

  it('a message with readings taken, or only duplicates, is ingested', async () => {
    const { json, records, reading } = intakeHarness();
    const message = [reading(T0, 10), reading(T0 + 1000, 11)];
    assert.deepEqual(await json(message), { kind: 'json', outcome: 'ingested' });
    assert.deepEqual(await json(message), { kind: 'json', outcome: 'ingested' }, 'a redelivery');
    assert.equal(records.predictions.length, 2);
    assert.deepEqual(records.deadLetters, []);
  });
});
