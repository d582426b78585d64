import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DUPLICATE_MEMBER_REASON } from '../../src/common/http/json-duplicate-keys';
import {
  deadLetterPayload,
  MAX_READINGS_PER_MESSAGE,
  parseTelemetry,
  parseTelemetryTopic,
  telemetryTime,
} from '../../src/domains/manufacturing/mqtt/plant-telemetry.util';

const T0 = Date.parse('2026-11-23T00:00:00Z');

describe('manufacturing: MQTT JSON telemetry', () => {
  it('reads site, line and asset from factory/{site}/{line}/{assetId}/telemetry', () => {
    assert.deepEqual(parseTelemetryTopic('factory/plant-1/line-a/engine-7/telemetry'), {
      site: 'plant-1',
      line: 'line-a',
      assetId: 'engine-7',
    });
    for (const topic of [
      'factory/plant-1/line-a/engine-7/alarms',
      'factory/plant-1/line-a/telemetry',
      'factory/plant-1/line-a/engine-7/x/telemetry',
      'factory/plant-1//engine-7/telemetry',
      'factory/+/line-a/engine-7/telemetry',
    ]) {
      assert.equal(parseTelemetryTopic(topic), undefined, topic);
    }
  });

  it('takes ISO 8601 times and epoch milliseconds, nothing else', () => {
    assert.equal(telemetryTime('2026-11-23T00:00:00Z'), T0);
    assert.equal(telemetryTime('2026-11-23T01:00:00+01:00'), T0);
    assert.equal(telemetryTime(T0), T0);
    // Whole milliseconds, a fraction cut off as Date.parse cuts an ISO time's microseconds.
    assert.equal(telemetryTime(T0 + 0.7), T0);
    assert.equal(telemetryTime('2026-11-23T00:00:00.000700Z'), T0);
    assert.match(String(telemetryTime(undefined)), /missing/);
    assert.match(String(telemetryTime('23/11/2026')), /ISO 8601/);
    assert.match(String(telemetryTime('2026-13-45T99:00:00Z')), /not a valid time/);
    // Not rolled into the next day or month, as the HTTP route refuses them too.
    for (const time of ['2026-02-30T10:00:00Z', '2026-12-31T24:00Z', '2016-12-31T23:59:60Z']) {
      assert.match(String(telemetryTime(time)), /not a valid time/, time);
    }
    assert.match(String(telemetryTime(null)), /ISO 8601/);
  });

  it('refuses a number before 2000-01-01 as epoch milliseconds, saying what it reads as and when it looks like seconds', () => {
    const seconds = 1765000000; // 2025-12-06T05:46:40Z in seconds
    assert.equal(
      telemetryTime(seconds),
      'timestamp 1765000000 reads as 1970-01-21T10:16:40.000Z; epoch milliseconds expected ' +
        '(this looks like seconds; numbers before 2000-01-01 or from 3000-01-01 on are refused)',
    );
    assert.equal(telemetryTime(seconds * 1000), seconds * 1000);
    assert.equal(telemetryTime(Date.UTC(2000, 0, 1)), Date.UTC(2000, 0, 1));
    assert.match(String(telemetryTime(Date.UTC(2000, 0, 1) - 1)), /reads as 1999-12-31T23:59:59\.999Z/);
    for (const odd of [0, 1, -5, 1.5, 946684799.9]) {
      const reason = String(telemetryTime(odd));
      assert.match(reason, new RegExp(`^timestamp ${odd} reads as 19[67]\\d-`), reason);
      assert.doesNotMatch(reason, /looks like seconds/, reason);
    }
    assert.match(String(telemetryTime(-1e20)), /reads as no date/);
    // Microseconds and nanoseconds were refused only as ahead of the gateway's clock, with no word of the unit.
    assert.equal(
      telemetryTime(seconds * 1e6),
      'timestamp 1765000000000000 reads as +057900-08-16T17:46:40.000Z; epoch milliseconds expected ' +
        '(this looks like microseconds; numbers before 2000-01-01 or from 3000-01-01 on are refused)',
    );
    assert.match(String(telemetryTime(seconds * 1e9)), /reads as no date; .*\(this looks like nanoseconds; /);
    assert.equal(telemetryTime(Date.UTC(3000, 0, 1) - 1), Date.UTC(3000, 0, 1) - 1);
    assert.match(
      String(telemetryTime(Date.UTC(3000, 0, 1))),
      /^timestamp 32503680000000 reads as 3000-01-01T00:00:00\.000Z; /,
    );
    assert.doesNotMatch(String(telemetryTime(Date.UTC(3000, 0, 1))), /looks like/);
    // Each element by itself: the others of the message are taken.
    const parsed = parseTelemetry(
      JSON.stringify([
        { timestamp: seconds, values: { s2: 1 } },
        { timestamp: T0, values: { s2: 1 } },
      ]),
    );
    assert.deepEqual(parsed.readings, [{ timestamp: T0, values: { s2: 1 } }]);
    assert.deepEqual(
      parsed.errors.map((e) => e.index),
      [0],
    );
    assert.match(parsed.errors[0].reason, /this looks like seconds/);
  });

  it('reads the three payload shapes into readings', () => {
    const values = { s2: 642.1, s3: 1589.7 };
    const single = parseTelemetry(JSON.stringify({ timestamp: T0, values }));
    assert.deepEqual(single, { readings: [{ timestamp: T0, values }], errors: [] });
    const many = parseTelemetry(
      Buffer.from(
        JSON.stringify([
          { timestamp: new Date(T0).toISOString(), values },
          { timestamp: T0 + 1, values },
        ]),
      ),
    );
    assert.deepEqual(
      many.readings.map((r) => r.timestamp),
      [T0, T0 + 1],
    );
    const flat = parseTelemetry(JSON.stringify({ timestamp: T0, ...values }));
    assert.deepEqual(flat, { readings: [{ timestamp: T0, values }], errors: [] });
  });

  // As an HTTP body's: it was dead-lettered as "not JSON: Unexpected token '\uFEFF'", the mark unseen in the detail.
  it('drops a leading UTF-8 byte order mark, as from an HTTP body; a member name given twice is still found', () => {
    const values = { s2: 642.1 };
    const bom = Buffer.from([0xef, 0xbb, 0xbf]);
    const withBom = Buffer.concat([bom, Buffer.from(JSON.stringify({ timestamp: T0, values }))]);
    assert.deepEqual(parseTelemetry(withBom), { readings: [{ timestamp: T0, values }], errors: [] });
    assert.deepEqual(parseTelemetry(`\uFEFF${JSON.stringify({ timestamp: T0, values })}`).readings, [
      { timestamp: T0, values },
    ]);
    const twice = Buffer.concat([bom, Buffer.from(`{"timestamp":${T0},"values":{"s2":1,"s2":2}}`)]);
    assert.deepEqual(parseTelemetry(twice).errors, [
      { index: 0, reason: 'values.s2: is given twice in the same object (member names must be unique)' },
    ]);
  });

  it('leaves value checks to the stream but refuses bad shapes, with the element index', () => {
    // A string value is the stream's to refuse (with the tag's name), not the parser's.
    assert.deepEqual(parseTelemetry(`{"timestamp":${T0},"values":{"s2":"hot"}}`).readings, [
      { timestamp: T0, values: { s2: 'hot' } },
    ]);
    const mixed = parseTelemetry(
      JSON.stringify([
        { timestamp: T0, values: { s2: 1 } },
        { values: { s2: 1 } },
        { timestamp: T0, values: [1, 2] },
        { timestamp: T0, values: { s2: 1 }, s3: 2 },
        { timestamp: T0 },
        42,
      ]),
    );
    assert.equal(mixed.readings.length, 1);
    assert.deepEqual(
      mixed.errors.map((e) => e.index),
      [1, 2, 3, 4, 5],
    );
    assert.match(mixed.errors[0].reason, /timestamp: missing/);
    assert.match(mixed.errors[1].reason, /values: expected an object/);
    assert.match(mixed.errors[2].reason, /unexpected fields beside values: s3/);
    assert.match(mixed.errors[3].reason, /no values/);
    assert.match(mixed.errors[4].reason, /expected an object/);
  });

  it('takes an ISO time only with Z or an offset: one without would be read in the server time zone', () => {
    const local = parseTelemetry('{"timestamp":"2026-11-23T10:00:00.800","values":{"s2":1}}');
    assert.equal(local.readings.length, 0);
    assert.match(local.errors[0].reason, /timestamp: must be an ISO 8601 time with Z or an offset/);
    for (const zone of ['Z', '+01:00', '+0100']) {
      const { readings } = parseTelemetry(`{"timestamp":"2026-11-23T10:00:00${zone}","values":{"s2":1}}`);
      assert.equal(readings[0].timestamp, Date.parse(`2026-11-23T10:00:00${zone}`), zone);
    }
  });

  it('turns a message that is not JSON, empty or too large into one error', () => {
    const broken = parseTelemetry('{"timestamp": 1, "values": {');
    assert.equal(broken.readings.length, 0);
    assert.match(broken.errors[0].reason, /^not JSON/);
    assert.match(parseTelemetry('[]').errors[0].reason, /empty array/);
    // Latin-1 bytes (a tag named with é, 0xE9) were read with U+FFFD in their place and taken as another tag.
    const latin1 = parseTelemetry(
      Buffer.from('{"timestamp":"2026-12-07T00:00:00Z","values":{"temp\u00e9":1}}', 'latin1'),
    );
    assert.equal(latin1.readings.length, 0);
    assert.equal(latin1.errors[0].reason, 'not UTF-8: the byte sequence at byte 51 is not UTF-8');
    assert.equal(
      parseTelemetry(Buffer.from('{"timestamp":"2026-12-07T00:00:00Z","values":{"temp\u00e9":1}}')).errors.length,
      0,
    );
    const huge = Array.from({ length: MAX_READINGS_PER_MESSAGE + 1 }, (_, i) => ({ timestamp: i, values: { a: 1 } }));
    assert.match(parseTelemetry(JSON.stringify(huge)).errors[0].reason, /more than 10000 readings/);
  });

  it('refuses a message nested deeper than MAX_JSON_DEPTH as malformed, before anything walks it', () => {
    // A reading's value 100,000 levels deep used to reach the stream, whose dead letter for the value
    // (JSON.stringify) overflowed the stack: the message was dead-lettered as 'ingest-failed'.
    const depth = 100_000;
    const deep = `{"timestamp":1,"values":{"s2":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}}`;
    const parsed = parseTelemetry(deep);
    assert.deepEqual(parsed.readings, []);
    assert.deepEqual(parsed.errors, [{ index: 0, reason: 'nests arrays and objects more than 64 levels deep' }]);
    // Readings themselves are three levels deep (array, reading, values).
    assert.equal(parseTelemetry(`[{"timestamp":${T0},"values":{"s2":1}}]`).readings.length, 1);
  });

  it('refuses a message that gives a member name twice, naming it, as an HTTP body is refused', () => {
    const twice = parseTelemetry(
      Buffer.from('[{"timestamp":1,"values":{"s2":1}},{"timestamp":2,"values":{"s2":1,"s2":9}}]'),
    );
    assert.deepEqual(twice.readings, []);
    assert.deepEqual(twice.errors, [{ index: 0, reason: `[1].values.s2: ${DUPLICATE_MEMBER_REASON}` }]);
    assert.match(parseTelemetry('{"timestamp":1,"timestamp":2,"s2":1}').errors[0].reason, /^timestamp: is given twice/);
    // The same tags in two readings, or in values and beside them nowhere twice, are no duplicate.
    assert.equal(
      parseTelemetry(`[{"timestamp":${T0},"values":{"s2":1}},{"timestamp":${T0 + 1},"values":{"s2":1}}]`).readings
        .length,
      2,
    );
  });

  it('keeps dead-letter payloads as text, or base64 when binary, cut to 4 KiB', () => {
    assert.equal(deadLetterPayload(Buffer.from('{"a":1}'), false), '{"a":1}');
    assert.equal(deadLetterPayload(Buffer.from([0, 1, 255]), true), 'base64:AAH/');
    assert.equal(deadLetterPayload(Buffer.alloc(10_000, 'x'), false).length, 4096);
  });
});
