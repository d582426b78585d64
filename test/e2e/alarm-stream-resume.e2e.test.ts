import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { PlantRecordsRepository } from '../../src/domains/manufacturing/records/plant-records.repository';
import { alarmStream, massReconnect, storeAlarms, StoredAlarm, streamedAlarms } from '../fixtures/alarm-stream';
import { bundledModelsDir } from '../fixtures/paths';
import { ai4iReadings, DATASETS_SKIP, millAsset } from '../fixtures/plant-data';
import { seededRandom } from '../fixtures/random';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';
import { until } from '../fixtures/until';

const T0 = Date.parse('2026-11-23T00:00:00Z');

describe('the alarm stream resumes after a reconnect (Last-Event-ID)', { skip: DATASETS_SKIP }, () => {
  let app: NestFastifyApplication;
  let http: ReturnType<typeof request>;
  let port: number;
  let modelsDir: string;
  const admin = bearer(tokenFor(['ml-admin']));
  const scada = bearer(tokenFor(['scada']));
  const operator = bearer(tokenFor(['plant-operator']));
  let t = T0;

  /** Raises the mill's alarm and clears it again (some alarms, stored and streamed once the posts are answered). */
  const raiseAndClear = async (): Promise<void> => {
    for (const rows of [ai4iReadings(true, 40), ai4iReadings(false, 30).slice(10)]) {
      await http
        .post('/v1/manufacturing/assets/mill-1/readings')
        .set('Authorization', scada)
        .send({ readings: rows.map((values) => ({ timestamp: new Date((t += 1000)).toISOString(), values })) })
        .expect(200);
    }
  };
  /** Every stored alarm, oldest first. */
  const stored = async (): Promise<StoredAlarm[]> => {
    const res = await http.get('/v1/manufacturing/alarms').set('Authorization', operator).expect(200);
    return (res.body as { alarms: StoredAlarm[] }).alarms
      .reverse()
      .map(({ id, assetId, state, at }) => ({ id, assetId, state, at }));
  };
  const streamed = async (stream: ReturnType<typeof alarmStream>, count: number, what: string) =>
    until(what, () => (streamedAlarms(stream.received).length >= count ? true : undefined), 10_000);

  before(async () => {
    modelsDir = bundledModelsDir(['manufacturing']);
    app = await createTestApp({ MODELS_DIR: modelsDir });
    await app.listen(0, '127.0.0.1');
    port = (app.getHttpServer().address() as AddressInfo).port;
    http = request(app.getHttpServer());
    await http.put('/v1/manufacturing/assets/mill-1').set('Authorization', admin).send(millAsset('mill-1')).expect(200);
  });
  after(async () => {
    await app.close();
    rmSync(modelsDir, { recursive: true, force: true });
  });

  it(
    'sends exactly the alarms missed while disconnected, in order, then the live ones',
    { timeout: 60_000 },
    async () => {
      const first = alarmStream(port, operator);
      await first.ready;
      await raiseAndClear();
      const seen = await stored();
      assert.ok(seen.length >= 2);
      await streamed(first, seen.length, 'the first alarms');
      // A fresh stream starts with an id alone (the newest stored alarm's, none yet: 0), then each alarm has its row id.
      assert.deepEqual(first.received[0], { type: undefined, id: '0', data: undefined });
      assert.deepEqual(streamedAlarms(first.received), seen);
      first.close();
      await first.ended;

      await raiseAndClear();
      await raiseAndClear();
      const missed = (await stored()).slice(seen.length);
      assert.ok(missed.length >= 4);

      const second = alarmStream(port, operator, seen.at(-1)!.id);
      await second.ready;
      await streamed(second, missed.length, 'the missed alarms');
      await raiseAndClear();
      const all = await stored();
      await streamed(second, all.length - seen.length, 'the missed alarms, then the live ones');
      assert.deepEqual(streamedAlarms(second.received), all.slice(seen.length));
      assert.deepEqual(
        second.received.filter((e) => e.type !== 'alarm'),
        [],
        'nothing but alarms: no gap, no position when resuming',
      );
      // A replayed alarm is sent as it was first: the same JSON as a live one, site, line and model included.
      assert.deepEqual(Object.keys(second.events[0]), Object.keys(first.events[0]));
      assert.deepEqual(
        [second.events[0].site, second.events[0].line, second.events[0].model],
        ['plant-1', 'line-b', { name: 'machine-failure', version: '1' }],
      );
      // And the listing, where a client pages what a resume could not replay, lists each alarm as it was streamed.
      const listed = (await http.get('/v1/manufacturing/alarms').set('Authorization', operator).expect(200)).body as {
        alarms: Array<Record<string, unknown>>;
      };
      const sameAlarm = listed.alarms.find((a) => a.id === second.received.find((e) => e.type === 'alarm')?.id);
      assert.ok(sameAlarm, 'the replayed alarm is listed');
      assert.deepEqual({ ...second.events[0], id: sameAlarm.id }, sameAlarm);
      second.close();
      await second.ended;

      // Resuming from the newest alarm sends nothing again.
      const third = alarmStream(port, operator, all.at(-1)!.id);
      await third.ready;
      await raiseAndClear();
      const later = (await stored()).slice(all.length);
      await streamed(third, later.length, 'the live alarms after the newest');
      assert.deepEqual(streamedAlarms(third.received), later);
      third.close();
      await third.ended;
    },
  );

  it('sends an alarm stored while the replay reads once, after those before it', { timeout: 60_000 }, async () => {
    const from = (await stored()).at(-1)!.id;
    await raiseAndClear();
    const records = app.get(PlantRecordsRepository);
    const read = records.alarmsAfter.bind(records);
    let replayRead!: () => void;
    const replayed = new Promise<void>((resolve) => (replayRead = resolve));
    // The replay's read, with alarms raised while it runs: some stored (and streamed live) before the query reads
    // them, some after it has read and before it answers. The first are in the read and held from the live stream
    // both; the last are held only.
    records.alarmsAfter = async (afterId, limit) => {
      await raiseAndClear();
      const rows = await read(afterId, limit);
      await raiseAndClear();
      replayRead();
      return rows;
    };
    try {
      const stream = alarmStream(port, operator, from);
      await stream.ready;
      await replayed;
      const missed = (await stored()).filter((r) => BigInt(r.id) > BigInt(from));
      await streamed(stream, missed.length, 'the missed alarms and those raised during the replay');
      await raiseAndClear();
      const expected = (await stored()).filter((r) => BigInt(r.id) > BigInt(from));
      await streamed(stream, expected.length, 'then the live ones');
      assert.deepEqual(streamedAlarms(stream.received), expected);
      stream.close();
      await stream.ended;
    } finally {
      records.alarmsAfter = read;
    }
  });

  it('refuses a Last-Event-ID that is not an id of the stream with 400 naming the header, audited', async () => {
    const db = app.get(DataSource);
    for (const [i, bad] of ['abc', '-1', '01', '1.5', '9223372036854775808', '1, 2'].entries()) {
      const res = await http
        .get('/v1/manufacturing/alarms/stream')
        .set('Authorization', operator)
        .set('Accept', 'text/event-stream')
        .set('Last-Event-ID', bad)
        .set('X-Request-Id', `bad-last-event-id-${i}`);
      assert.equal(res.status, 400, `${bad}: ${res.text}`);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
      assert.deepEqual((res.body as { errors: unknown[] }).errors, [
        {
          field: 'Last-Event-ID',
          reason: 'must be the id of an event of this stream: a whole number from 0 to 9223372036854775807',
        },
      ]);
      const rows: Array<{ action: string; outcome: string; status_code: number }> = await db.query(
        'SELECT action, outcome, status_code FROM audit_events WHERE request_id = $1',
        [`bad-last-event-id-${i}`],
      );
      assert.deepEqual(rows, [{ action: 'manufacturing.alarms-stream', outcome: 'invalid', status_code: 400 }]);
    }
  });

  it(
    'past the newest stored alarm (a database reset), says so and starts from the newest',
    { timeout: 30_000 },
    async () => {
      const newest = (await stored()).at(-1)!.id;
      const ahead = String(BigInt(newest) + 1000n);
      const stream = alarmStream(port, operator, ahead);
      await stream.ready;
      await until('the gap', () => (stream.received.length > 0 ? true : undefined), 10_000);
      assert.deepEqual(stream.received[0], {
        type: 'alarms-missed',
        id: newest,
        data: { reason: 'unknown-id', after: ahead, through: newest, cursor: String(BigInt(newest) + 1n) },
      });
      await raiseAndClear();
      const live = (await stored()).filter((r) => BigInt(r.id) > BigInt(newest));
      await streamed(stream, live.length, 'the live alarms');
      assert.deepEqual(streamedAlarms(stream.received), live);
      stream.close();
      await stream.ended;
    },
  );

  // A failover drops every dashboard at once and they reconnect together: before, each replay was a read of its own.
  it(
    'serves many reconnects at once with a shared read, each stream exactly the alarms it missed, in order',
    { timeout: 120_000 },
    async () => {
      const records = app.get(PlantRecordsRepository);
      await storeAlarms(records, 40, ['mill-1', 'mill-2'], T0);
      const all = await stored();
      const random = seededRandom(40);
      const lastIds = Array.from({ length: 100 }, () => all[Math.floor(random() * all.length)].id);
      // The database slow to answer the first replay (as after a failover): the reconnects meanwhile wait for one read.
      const reads = await massReconnect(records, port, operator, lastIds, all);
      assert.ok(reads <= 2, `one read for the first replay, one for the others that waited on it: ${reads}`);
    },
  );
});
