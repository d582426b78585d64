import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { get } from 'sparkplug-payload';
import { org } from 'sparkplug-payload/lib/sparkplugPayloadProto';
import {
  bringsBirthOf,
  decodeSparkplug,
  followsEveryMessageOf,
  parseSparkplugTopic,
  RebirthRequests,
  SparkplugAliases,
  SparkplugDecodeError,
  sparkplugReadings,
  parseSparkplugState,
  sparkplugStatePayload,
  sparkplugStateTopic,
  SparkplugTopic,
  topicFilterMatches,
} from '../../src/domains/manufacturing/sparkplug.util';

const sparkplug = get('spBv1.0');
if (!sparkplug) throw new Error('sparkplug-payload lost spBv1.0');
type Payload = Parameters<typeof sparkplug.encodePayload>[0];
const encode = (payload: Payload) => sparkplug.encodePayload(payload);

const T0 = 1_764_000_000_000;
const NBIRTH = parseSparkplugTopic('spBv1.0/plant1/NBIRTH/edge1') as SparkplugTopic;
const NDEATH = parseSparkplugTopic('spBv1.0/plant1/NDEATH/edge1') as SparkplugTopic;
const DBIRTH = parseSparkplugTopic('spBv1.0/plant1/DBIRTH/edge1/mill-7') as SparkplugTopic;
const DDATA = parseSparkplugTopic('spBv1.0/plant1/DDATA/edge1/mill-7') as SparkplugTopic;
const DDEATH = parseSparkplugTopic('spBv1.0/plant1/DDEATH/edge1/mill-7') as SparkplugTopic;

/** An NBIRTH then a DBIRTH of a milling machine, decoded and recorded as the gateway would. */
function born(bdSeq = 0): SparkplugAliases {
  const aliases = new SparkplugAliases();
  const nbirth = encode({
    timestamp: T0,
    seq: 0,
    metrics: [
      { name: 'bdSeq', type: 'Int64', value: bdSeq },
      { name: 'Node Control/Rebirth', type: 'Boolean', value: false },
    ],
  });
  aliases.onBirth(NBIRTH, decodeSparkplug(nbirth));
  const dbirth = encode({
    timestamp: T0,
    seq: 1,
    metrics: [
      { name: 'Air temperature', alias: 1, type: 'Float', value: 300.25 },
      { name: 'Rotational speed', alias: 2, type: 'Int32', value: 1500 },
      { name: 'Tool wear', alias: 3, type: 'Int64', value: 0 },
      { name: 'Spindle running', alias: 4, type: 'Boolean', value: true },
      { name: 'Product', alias: 5, type: 'String', value: 'L47181' },
      { name: 'Torque', alias: 6, type: 'Double', value: 40.123456789 },
    ],
  });
  aliases.onBirth(DBIRTH, decodeSparkplug(dbirth));
  return aliases;
}

describe('manufacturing: Sparkplug B', () => {
  it('parses topics and refuses ones that are not Sparkplug B', () => {
    assert.deepEqual(DDATA, { group: 'plant1', messageType: 'DDATA', edgeNode: 'edge1', device: 'mill-7' });
    assert.deepEqual(NBIRTH, { group: 'plant1', messageType: 'NBIRTH', edgeNode: 'edge1' });
    assert.deepEqual(parseSparkplugTopic('spBv1.0/STATE/scada-1'), {
      group: '',
      messageType: 'STATE',
      edgeNode: 'scada-1',
    });
    for (const bad of [
      'spBv1.0/plant1/DDATA/edge1', // device message without a device
      'spBv1.0/plant1/NDATA/edge1/mill-7', // node message with a device
      'spBv1.0/plant1/XDATA/edge1',
      'spBv1.0//NDATA/edge1',
      'spBv1.0/plant1/DDATA/edge1/mill-7/extra',
      'spBv1.0/plant1/DDATA/+/mill-7',
      'spBv1.0/plant1/NDATA/#',
      'spAv1.0/plant1/NDATA/edge1',
      'factory/site/line/asset-1/telemetry',
      '',
    ]) {
      assert.equal(parseSparkplugTopic(bad), undefined, bad);
    }
  });

  it('reads a DDATA that carries only aliases with the names its DBIRTH gave them', () => {
    const aliases = born();
    const ddata = encode({
      timestamp: T0 + 1000,
      seq: 2,
      metrics: [
        { alias: 1, type: 'Float', value: 301.5 },
        { alias: 2, type: 'Int32', value: 1512 },
        { alias: 3, type: 'Int64', value: 2 ** 40 + 7 }, // decoded as a protobuf Long
        { alias: 6, type: 'Double', value: 41.000000001, timestamp: T0 + 1500 },
        { alias: 4, type: 'Boolean', value: false },
      ],
    });
    const decoded = decodeSparkplug(ddata);
    assert.equal(decoded.timestamp, T0 + 1000);
    assert.equal(decoded.seq, 2);
    assert.equal(decoded.metrics[0].name, undefined, 'the wire carried no name');
    assert.equal(typeof decoded.metrics[2].value, 'number', 'Long converted');

    const { readings, unknown, ignored } = sparkplugReadings(DDATA, decoded, aliases);
    assert.deepEqual(readings, [
      {
        timestamp: T0 + 1000,
        values: { 'Air temperature': 301.5, 'Rotational speed': 1512, 'Tool wear': 2 ** 40 + 7, 'Spindle running': 0 },
      },
      { timestamp: T0 + 1500, values: { Torque: 41.000000001 } },
    ]);
    assert.deepEqual(unknown, []);
    assert.deepEqual(ignored, []);
  });

  it('lists is_historical metrics (store and forward) as history with their times, never as readings', () => {
    const aliases = born();
    const ddata = encode({
      timestamp: T0 + 60_000,
      seq: 2,
      metrics: [
        { alias: 1, type: 'Float', value: 299.5, timestamp: T0 + 1000, isHistorical: true },
        { alias: 6, type: 'Double', value: 39.5, timestamp: T0 + 1000, isHistorical: true },
        { alias: 6, type: 'Double', value: 39.75, isHistorical: true },
        { alias: 2, type: 'Int32', value: 1510 },
      ],
    });
    const decoded = decodeSparkplug(ddata);
    assert.deepEqual(
      decoded.metrics.map((m) => m.historical),
      [true, true, true, undefined],
    );
    const { readings, historical, ignored } = sparkplugReadings(DDATA, decoded, aliases);
    assert.deepEqual(readings, [{ timestamp: T0 + 60_000, values: { 'Rotational speed': 1510 } }]);
    assert.deepEqual(historical, [
      { metric: 'Air temperature', timestamp: T0 + 1000 },
      { metric: 'Torque', timestamp: T0 + 1000 },
      { metric: 'Torque', timestamp: T0 + 60_000 },
    ]);
    assert.deepEqual(ignored, []);
  });

  it('keeps float32 precision for Float metrics and full precision for Double', () => {
    const aliases = born();
    const decoded = decodeSparkplug(
      encode({
        timestamp: T0,
        metrics: [
          { name: 'f', type: 'Float', value: 0.1 },
          { name: 'd', type: 'Double', value: 0.1 },
        ],
      }),
    );
    const [reading] = sparkplugReadings(DDATA, decoded, aliases).readings;
    assert.equal(reading.values.f, Math.fround(0.1));
    assert.equal(reading.values.d, 0.1);
  });

  it('reports aliases no BIRTH defined instead of guessing, and lists non-numeric metrics', () => {
    const aliases = born();
    const decoded = decodeSparkplug(
      encode({
        timestamp: T0 + 2000,
        metrics: [
          { alias: 1, type: 'Float', value: 299.5 },
          { alias: 99, type: 'Float', value: 1 },
          { alias: 99, type: 'Float', value: 2 },
          { alias: 5, type: 'String', value: 'M14860' },
          { alias: 7, type: 'UInt64', value: '18446744073709551615' },
          { name: 'Counter', type: 'UInt64', value: '18446744073709551615' },
        ],
      }),
    );
    const { readings, unknown, ignored } = sparkplugReadings(DDATA, decoded, aliases);
    assert.deepEqual(readings, [{ timestamp: T0 + 2000, values: { 'Air temperature': 299.5 } }]);
    assert.deepEqual(unknown, [99, 7]);
    assert.deepEqual(ignored, [
      { metric: 'Product', reason: 'String is not a numeric reading' },
      { metric: 'Counter', reason: 'integer 18446744073709551615 is beyond 2^53' },
    ]);
  });

  it('decodes Long and unsigned integers exactly', () => {
    const decoded = decodeSparkplug(
      encode({
        timestamp: T0,
        metrics: [
          { name: 'neg', type: 'Int64', value: -5 },
          { name: 'u32', type: 'UInt32', value: 3_000_000_000 },
          { name: 'i8', type: 'Int8', value: -3 },
          { name: 'big', type: 'UInt64', value: '9007199254740993' },
        ],
      }),
    );
    assert.deepEqual(
      decoded.metrics.map((m) => m.value),
      [-5, 3_000_000_000, -3, 9007199254740993n],
    );
    const { readings } = sparkplugReadings(DDATA, decoded, new SparkplugAliases());
    assert.deepEqual(readings[0].values, { neg: -5, u32: 3_000_000_000, i8: -3 });
  });

  it('reads an integer metric from the field it was sent in: a UInt32 in int_value (the spec, Python and C Tahu) as in long_value (Java Tahu)', () => {
    // The library reads a UInt32 from long_value only: sent as the spec says (uint32, int_value) it read null, and the
    // metric was ignored as a null; an Int32 or UInt16 sent in long_value read 0, a value never measured.
    const DataType = org.eclipse.tahu.protobuf.DataType;
    const bytes = org.eclipse.tahu.protobuf.Payload.encode({
      timestamp: T0,
      metrics: [
        { name: 'spindle', datatype: DataType.UInt32, intValue: 3_000_000_000 },
        { name: 'rpm', datatype: DataType.UInt32, intValue: 1500 },
        { name: 'java', datatype: DataType.UInt32, longValue: 1510 },
        { name: 'i32', datatype: DataType.Int32, intValue: -7 >>> 0 },
        { name: 'i32long', datatype: DataType.Int32, longValue: 1480 },
        { name: 'u16long', datatype: DataType.UInt16, longValue: 60_000 },
        { name: 'none', datatype: DataType.UInt32, isNull: true },
      ],
    }).finish();
    const decoded = decodeSparkplug(bytes);
    assert.deepEqual(
      decoded.metrics.map((m) => [m.name, m.type, m.value]),
      [
        ['spindle', 'UInt32', 3_000_000_000],
        ['rpm', 'UInt32', 1500],
        ['java', 'UInt32', 1510],
        ['i32', 'Int32', -7],
        ['i32long', 'Int32', 1480],
        ['u16long', 'UInt16', 60_000],
        ['none', 'UInt32', null],
      ],
    );
    const { readings, ignored } = sparkplugReadings(DDATA, decoded, new SparkplugAliases());
    assert.deepEqual(readings[0].values, {
      spindle: 3_000_000_000,
      rpm: 1500,
      java: 1510,
      i32: -7,
      i32long: 1480,
      u16long: 60_000,
    });
    assert.deepEqual(ignored, [{ metric: 'none', reason: 'null value' }]);
  });

  it('reads DATA metrics that omit their datatype (Sparkplug 3) with the datatype from the BIRTH', () => {
    const aliases = born();
    // The library's encoder always writes a datatype; a Sparkplug 3 edge may not, so encode raw protobuf.
    const bytes = org.eclipse.tahu.protobuf.Payload.encode({
      timestamp: T0 + 3000,
      metrics: [
        { alias: 1, floatValue: 302.5 },
        { alias: 2, intValue: -7 >>> 0 }, // Int32 travels as uint32
        { alias: 3, longValue: 42 },
      ],
    }).finish();
    const decoded = decodeSparkplug(bytes);
    assert.equal(decoded.metrics[1].type, undefined);
    const { readings } = sparkplugReadings(DDATA, decoded, aliases);
    assert.deepEqual(readings, [
      { timestamp: T0 + 3000, values: { 'Air temperature': 302.5, 'Rotational speed': -7, 'Tool wear': 42 } },
    ]);
  });

  it('uses the receive time when neither metric nor payload has a timestamp', () => {
    const decoded = decodeSparkplug(encode({ metrics: [{ name: 'x', type: 'Double', value: 1.5 }] }));
    assert.equal(decoded.timestamp, undefined);
    const aliases = new SparkplugAliases();
    assert.deepEqual(sparkplugReadings(DDATA, decoded, aliases, { receivedAt: T0 }).readings, [
      { timestamp: T0, values: { x: 1.5 } },
    ]);
    assert.deepEqual(sparkplugReadings(DDATA, decoded, aliases).ignored, [
      { metric: 'x', reason: 'no metric or payload timestamp' },
    ]);
  });

  it('treats BIRTH values as readings and other message types as none', () => {
    const aliases = born();
    const dbirth = decodeSparkplug(
      encode({ timestamp: T0, metrics: [{ name: 'Torque', alias: 6, type: 'Double', value: 39.5 }] }),
    );
    assert.deepEqual(sparkplugReadings(DBIRTH, dbirth, aliases).readings, [
      { timestamp: T0, values: { Torque: 39.5 } },
    ]);
    // A birth's values are current as of its publishing, whenever each last changed.
    const rebirth = decodeSparkplug(
      encode({
        timestamp: T0 + 5000,
        metrics: [
          { name: 'Torque', alias: 6, type: 'Double', value: 41, timestamp: T0 + 2000 },
          { name: 'Tool wear', alias: 3, type: 'Int64', value: 7, timestamp: T0 },
        ],
      }),
    );
    assert.deepEqual(sparkplugReadings(DBIRTH, rebirth, aliases).readings, [
      { timestamp: T0 + 5000, values: { Torque: 41, 'Tool wear': 7 } },
    ]);
    const dcmd = parseSparkplugTopic('spBv1.0/plant1/DCMD/edge1/mill-7') as SparkplugTopic;
    assert.deepEqual(sparkplugReadings(dcmd, dbirth, aliases), {
      readings: [],
      unknown: [],
      shared: [],
      ignored: [],
      notFinite: [],
      historical: [],
    });
  });

  it('forgets device aliases on a new NBIRTH, a DDEATH, or an NDEATH of the current session only', () => {
    let aliases = born();
    assert.equal(aliases.resolve(DDATA, { alias: 2 }), 'Rotational speed');
    aliases.onBirth(
      NBIRTH,
      decodeSparkplug(encode({ timestamp: T0, metrics: [{ name: 'bdSeq', type: 'Int64', value: 1 }] })),
    );
    assert.equal(aliases.resolve(DDATA, { alias: 2 }), undefined, 'a node rebirth resets its devices');

    aliases = born();
    assert.equal(aliases.onDeath(DDEATH), true);
    assert.equal(aliases.resolve(DDATA, { alias: 2 }), undefined);

    aliases = born(5);
    const deathOf = (bdSeq: number) =>
      decodeSparkplug(encode({ metrics: [{ name: 'bdSeq', type: 'Int64', value: bdSeq }] }));
    assert.equal(aliases.onDeath(NDEATH, deathOf(4)), false, "an earlier session's will");
    assert.equal(aliases.resolve(DDATA, { alias: 1 }), 'Air temperature');
    assert.equal(aliases.onDeath(NDEATH, deathOf(5)), true);
    assert.equal(aliases.resolve(DDATA, { alias: 1 }), undefined);
    assert.equal(aliases.resolve(DDATA, { name: 'Named', alias: 1 }), 'Named', 'a name needs no alias table');
    assert.throws(() => aliases.onBirth(DDATA, { metrics: [] }), /onBirth needs an NBIRTH or DBIRTH topic, got DDATA/);
  });

  it('remembers births up to a limit, forgetting the nodes born longest ago, so births from ever new ids cannot grow it', () => {
    const limit = 1000;
    const aliases = new SparkplugAliases(limit);
    const metrics = Array.from({ length: 9 }, (_, k) => ({ name: `m${k}`, alias: k, type: 'Float', value: 1 }));
    const birthOf = (i: number) => parseSparkplugTopic(`spBv1.0/plant1/DBIRTH/edge-${i}/dev-${i}`) as SparkplugTopic;
    const dataOf = (i: number) => parseSparkplugTopic(`spBv1.0/plant1/DDATA/edge-${i}/dev-${i}`) as SparkplugTopic;
    for (let i = 0; i < 5000; i++) aliases.onBirth(birthOf(i), { timestamp: T0, metrics });
    assert.ok(aliases.remembered <= limit, `${aliases.remembered} remembered past the limit of ${limit}`);
    assert.equal(aliases.resolve(dataOf(4999), { alias: 3 }), 'm3', 'the latest births are kept');
    assert.equal(
      aliases.resolve(dataOf(0), { alias: 3 }),
      undefined,
      'the oldest are forgotten (and asked to rebirth)',
    );

    // A node born again moves to the back of the line; deaths and rebirths give their room back.
    const kept = born();
    assert.equal(kept.remembered, 3 + 7, 'the node: 2 metrics and itself; the device: 6 and itself');
    kept.onBirth(DBIRTH, { timestamp: T0, metrics: [{ name: 'one', alias: 1, type: 'Float', value: 1 }] });
    assert.equal(kept.remembered, 3 + 2);
    assert.equal(kept.onDeath(DDEATH), true);
    assert.equal(kept.remembered, 3);
    assert.equal(kept.onDeath(NDEATH), true);
    assert.equal(kept.remembered, 0);
  });

  it('counts long metric names and ids by their length, so births of megabyte names cannot grow it past the limit', () => {
    const limit = 10_000;
    const aliases = new SparkplugAliases(limit);
    const long = 'x'.repeat(64_000); // 1,000 units of NAME_UNIT characters
    const metrics = (i: number) =>
      Array.from({ length: 3 }, (_, k) => ({ name: `${i}/${k}/${long}`, alias: k, type: 'Float', value: 1 }));
    const topic = (type: string, i: number, device = `dev-${i}`) =>
      parseSparkplugTopic(`spBv1.0/plant1/${type}/edge-${i}/${device}`) as SparkplugTopic;
    for (let i = 0; i < 200; i++) aliases.onBirth(topic('DBIRTH', i), { timestamp: T0, metrics: metrics(i) });
    assert.ok(aliases.remembered <= limit, `${aliases.remembered} remembered past the limit of ${limit}`);
    assert.equal(aliases.resolve(topic('DDATA', 199), { alias: 2 }), `199/2/${long}`, 'the latest birth is kept');
    assert.equal(aliases.resolve(topic('DDATA', 0), { alias: 2 }), undefined, 'the oldest are forgotten');

    // Device ids (and node ids) count by their length too.
    const ids = new SparkplugAliases(limit);
    const short = [{ name: 'm', alias: 1, type: 'Float', value: 1 }];
    for (let i = 0; i < 200; i++) ids.onBirth(topic('DBIRTH', i, `d${i}-${long}`), { timestamp: T0, metrics: short });
    assert.ok(ids.remembered <= limit, `${ids.remembered} remembered past the limit of ${limit}`);
    assert.equal(ids.resolve(topic('DDATA', 0, `d0-${long}`), { alias: 1 }), undefined, 'the oldest are forgotten');
  });

  it('asks a node to rebirth once per interval, and remembers only the nodes asked within the last one', () => {
    let now = 0;
    const requests = new RebirthRequests(5000, () => now);
    assert.equal(requests.take('plant1', 'edge1'), true);
    now = 4999;
    assert.equal(requests.take('plant1', 'edge1'), false, 'a burst of unknown aliases is one request');
    now = 5000;
    assert.equal(requests.take('plant1', 'edge1'), true, 'asked again once the interval has passed');

    // DDATA with unknown aliases from ever new edge nodes: each is asked once, and forgotten an interval later.
    for (let i = 0; i < 100_000; i++) assert.equal(requests.take('plant1', `edge-${i}`), true);
    assert.equal(requests.size, 100_001);
    now = 10_000;
    assert.equal(requests.take('plant1', 'edge-new'), true);
    assert.equal(requests.size, 1, 'the requests of earlier intervals are forgotten');
  });

  it('throws a clear error on bytes that are not a Sparkplug B payload', () => {
    for (const bytes of [
      Uint8Array.from([0x12, 0x10, 0x01]), // metrics field longer than the buffer
      Uint8Array.from([0xff, 0xff]),
      Buffer.from('not a protobuf at all'),
    ]) {
      assert.throws(
        () => decodeSparkplug(bytes),
        (err: unknown) => err instanceof SparkplugDecodeError && /^malformed Sparkplug B payload: /.test(err.message),
      );
    }
    assert.deepEqual(decodeSparkplug(new Uint8Array(0)), { metrics: [] }, 'an empty payload is valid');
  });

  it('reads a birth whose DataSet metric the library cannot read: its aliases and readings, the DataSet as null', () => {
    // sparkplug-payload encodes this DataSet (an Int32 column, as Ignition sends) but refuses to decode it.
    const table = {
      numOfColumns: 2,
      columns: ['shift', 'parts'],
      types: ['Int32', 'String'] as Array<'Int32' | 'String'>,
      rows: [[1, 'a']],
    };
    const birth = encode({
      timestamp: T0,
      seq: 1,
      metrics: [
        { name: 'Air temperature', alias: 1, type: 'Float', value: 300.25, timestamp: T0 },
        { name: 'Shift report', alias: 2, type: 'DataSet', value: table, timestamp: T0 },
        { name: 'Torque', alias: 3, type: 'Double', value: 40.5, timestamp: T0 },
      ],
    });
    assert.throws(() => sparkplug.decodePayload(birth), /Invalid DataSetValue/, 'the library alone refuses it');
    const decoded = decodeSparkplug(birth);
    assert.deepEqual(
      decoded.metrics.map((m) => [m.name, m.alias, m.type, m.value]),
      [
        ['Air temperature', 1, 'Float', 300.25],
        ['Shift report', 2, 'DataSet', null],
        ['Torque', 3, 'Double', 40.5],
      ],
    );
    assert.equal(decoded.seq, 1);
    const aliases = new SparkplugAliases();
    aliases.onBirth(DBIRTH, decoded);
    const read = sparkplugReadings(DBIRTH, decoded, aliases);
    assert.deepEqual(read.readings, [{ timestamp: T0, values: { 'Air temperature': 300.25, Torque: 40.5 } }]);
    assert.deepEqual(read.ignored, [{ metric: 'Shift report', reason: 'DataSet is not a numeric reading' }]);
    // DDATA by alias after it, the DataSet among them (no datatype, as Sparkplug 3 allows): read by the birth's names.
    const data = encode({
      timestamp: T0 + 1000,
      seq: 2,
      metrics: [
        { alias: 2, type: 'DataSet', value: table },
        { alias: 3, type: 'Double', value: 41 },
      ],
    });
    const next = sparkplugReadings(DDATA, decodeSparkplug(data), aliases);
    assert.deepEqual(next.readings, [{ timestamp: T0 + 1000, values: { Torque: 41 } }]);
    assert.deepEqual(next.unknown, []);
  });
});

describe("manufacturing: a Sparkplug B edge node's sequence", () => {
  const withSeq = (seq: number | undefined) => ({ metrics: [], ...(seq === undefined ? {} : { seq }) });

  it('counts on from the NBIRTH over every message of the node, 255 wrapping to 0; a gap is named once', () => {
    const aliases = born(); // NBIRTH seq 0; its DBIRTH (seq 1) not followed by born()
    assert.equal(aliases.followSequence(DBIRTH, withSeq(1)), 'next');
    const NDATA = parseSparkplugTopic('spBv1.0/plant1/NDATA/edge1') as SparkplugTopic;
    assert.equal(aliases.followSequence(NDATA, withSeq(2)), 'next');
    assert.equal(aliases.followSequence(DDATA, withSeq(3)), 'next');
    assert.equal(aliases.followSequence(DDATA, withSeq(6)), 'gap', '4 and 5 missed');
    assert.equal(aliases.followSequence(DDATA, withSeq(7)), 'next', 'followed on from the message after the gap');
    for (let seq = 8; seq <= 255; seq++) assert.equal(aliases.followSequence(DDATA, withSeq(seq)), 'next');
    assert.equal(aliases.followSequence(DDEATH, withSeq(0)), 'next', '255 is followed by 0');
    assert.equal(aliases.followSequence(DDATA, withSeq(0)), 'gap', 'a repeat is out of sequence too');
    assert.equal(aliases.followSequence(DDATA, withSeq(undefined)), 'unknown', 'a payload without seq');
  });

  it('is unknown for a node whose NBIRTH the gateway has not seen, and starts again at each NBIRTH', () => {
    const aliases = new SparkplugAliases();
    assert.equal(aliases.followSequence(DDATA, withSeq(9)), 'unknown');
    aliases.onBirth(NBIRTH, { seq: 0, metrics: [{ name: 'bdSeq', value: 1, type: 'Int64' }] });
    assert.equal(aliases.followSequence(DDATA, withSeq(1)), 'next');
    aliases.onBirth(NBIRTH, { seq: 0, metrics: [{ name: 'bdSeq', value: 2, type: 'Int64' }] });
    assert.equal(aliases.followSequence(DDATA, withSeq(1)), 'next');
    aliases.onDeath(NDEATH, { metrics: [{ name: 'bdSeq', value: 2, type: 'Int64' }] });
    assert.equal(aliases.followSequence(DDATA, withSeq(2)), 'unknown', 'a dead node has no sequence');
  });

  it("is followed only when the subscriptions bring every message of the node's sequence, of all its devices", () => {
    const defaults =
      'factory/+/+/+/telemetry,spBv1.0/+/DDATA/+/+,spBv1.0/+/DBIRTH/+/+,spBv1.0/+/NBIRTH/+,spBv1.0/+/NDATA/+,spBv1.0/+/NDEATH/+,spBv1.0/+/DDEATH/+/+';
    assert.ok(followsEveryMessageOf(defaults.split(','), 'plant1', 'edge1'));
    assert.ok(followsEveryMessageOf(['spBv1.0/#'], 'plant1', 'edge1'));
    assert.ok(followsEveryMessageOf(['spBv1.0/plant1/+/edge1', 'spBv1.0/plant1/+/edge1/+'], 'plant1', 'edge1'));
    assert.ok(!followsEveryMessageOf(['spBv1.0/plant1/+/edge1', 'spBv1.0/plant1/+/edge1/+'], 'plant2', 'edge1'));
    const withoutNdata = defaults.replace(',spBv1.0/+/NDATA/+', '').split(',');
    assert.ok(!followsEveryMessageOf(withoutNdata, 'plant1', 'edge1'), 'NDATA not subscribed');
    assert.ok(!followsEveryMessageOf(['spBv1.0/+/+/+', 'spBv1.0/+/+/+/mill-7'], 'plant1', 'edge1'), 'one device only');
    assert.ok(!followsEveryMessageOf(['$share/gw/spBv1.0/#'], 'plant1', 'edge1'), 'a shared subscription');
  });

  it('matches topic filters as MQTT does', () => {
    assert.ok(topicFilterMatches('a/+/c', 'a/b/c'));
    assert.ok(topicFilterMatches('a/#', 'a'));
    assert.ok(topicFilterMatches('a/#', 'a/b/c'));
    assert.ok(topicFilterMatches('#', 'a/b'));
    assert.ok(!topicFilterMatches('a/+', 'a/b/c'));
    assert.ok(!topicFilterMatches('a/+/c', 'a/b'));
    assert.ok(!topicFilterMatches('a/b', 'a/c'));
  });
});

describe("manufacturing: whether a Sparkplug B edge node's NBIRTH was seen", () => {
  it('only an NBIRTH counts (a DBIRTH alone does not), until the node dies', () => {
    const aliases = new SparkplugAliases();
    assert.equal(aliases.hasNodeBirth(DDATA), false);
    aliases.onBirth(DBIRTH, { seq: 3, metrics: [{ name: 'Torque', alias: 1, type: 'Double', value: 1 }] });
    assert.equal(aliases.hasNodeBirth(DDATA), false, 'a DBIRTH of a node born before the gateway saw it');
    aliases.onBirth(NBIRTH, { seq: 0, metrics: [{ name: 'bdSeq', value: 4, type: 'Int64' }] });
    assert.equal(aliases.hasNodeBirth(DDATA), true);
    assert.equal(aliases.hasNodeBirth(NBIRTH), true);
    aliases.onDeath(NDEATH, { metrics: [{ name: 'bdSeq', value: 4, type: 'Int64' }] });
    assert.equal(aliases.hasNodeBirth(DDATA), false);
  });

  it('a rebirth is asked only when the subscriptions bring the NBIRTH it would send', () => {
    assert.ok(bringsBirthOf(['spBv1.0/+/NBIRTH/+'], 'plant1', 'edge1'));
    assert.ok(bringsBirthOf(['spBv1.0/#'], 'plant1', 'edge1'));
    assert.ok(!bringsBirthOf(['spBv1.0/+/DDATA/+/+', 'spBv1.0/+/+/+/+'], 'plant1', 'edge1'));
    assert.ok(!bringsBirthOf(['$share/gw/spBv1.0/+/NBIRTH/+'], 'plant1', 'edge1'));
  });
});

describe('manufacturing: a Sparkplug B host application STATE (3.0)', () => {
  it('is spBv1.0/STATE/{hostId}, parsed back as STATE', () => {
    assert.equal(sparkplugStateTopic('scada-primary'), 'spBv1.0/STATE/scada-primary');
    assert.deepEqual(parseSparkplugTopic(sparkplugStateTopic('scada-primary')), {
      group: '',
      messageType: 'STATE',
      edgeNode: 'scada-primary',
    });
  });

  it('is UTF-8 JSON of online and timestamp (not a Sparkplug payload, not 2.2 ONLINE/OFFLINE)', () => {
    assert.equal(sparkplugStatePayload(true, T0), `{"online":true,"timestamp":${T0}}`);
    assert.deepEqual(JSON.parse(sparkplugStatePayload(false, T0)), { online: false, timestamp: T0 });
  });

  it('is read back only from JSON with a boolean online and an epoch-milliseconds timestamp', () => {
    const read = (body: string) => parseSparkplugState(Buffer.from(body));
    assert.deepEqual(read(sparkplugStatePayload(false, T0)), { online: false, timestamp: T0 });
    assert.deepEqual(read(`{"timestamp":${T0},"online":true,"note":"x"}`), { online: true, timestamp: T0 });
    for (const body of [
      '',
      'OFFLINE',
      'ONLINE',
      'null',
      '[false]',
      '{"online":false}',
      `{"online":"false","timestamp":${T0}}`,
      '{"online":false,"timestamp":"1"}',
      '{"online":false,"timestamp":-1}',
      '{"online":false,"timestamp":1.5}',
      '{"online":false',
    ]) {
      assert.equal(read(body), undefined, body);
    }
  });
});
