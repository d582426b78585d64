import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Client } from 'pg';
import request from 'supertest';
import { PlantRecordsRepository } from '../../src/domains/manufacturing/records/plant-records.repository';
import {
  alarmStream,
  massReconnect,
  ReceivedEvent,
  storeAlarms,
  StoredAlarm,
  streamedAlarms,
} from '../fixtures/alarm-stream';
import { bundledModelsDir } from '../fixtures/paths';
import { ai4iReadings, DATASETS_SKIP, millAsset } from '../fixtures/plant-data';
import { createScratchDatabase, ScratchDatabase } from '../fixtures/scratch-database';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';
import { until } from '../fixtures/until';

const DATABASE_URL = process.env.DATABASE_URL;
const T0 = Date.parse('2026-11-23T00:00:00Z');
/** The alarm listener's connection, as pg_stat_activity names it (clientConfigOf). */
const LISTENER = 'inference-gateway-alarm-listener';

describe(
  "another gateway's alarms pushed live to this gateway's alarm stream on a PostgreSQL server",
  { skip: DATABASE_URL ? DATASETS_SKIP : 'DATABASE_URL is not set' },
  () => {
    let scratch: ScratchDatabase;
    let modelsDir: string;
    let a: NestFastifyApplication;
    let b: NestFastifyApplication;
    let portA: number;
    let portB: number;
    let watch: Client;
    const admin = bearer(tokenFor(['ml-admin']));
    const scada = bearer(tokenFor(['scada']));
    const operator = bearer(tokenFor(['plant-operator']));
    let t = T0;

    /** Sends readings to an asset of `app` that raise its alarm (`failed`), or clear it. */
    const ingest = async (app: NestFastifyApplication, assetId: string, failed: boolean): Promise<void> => {
      const rows = failed ? ai4iReadings(true, 40) : ai4iReadings(false, 30).slice(10);
      await request(app.getHttpServer())
        .post(`/v1/manufacturing/assets/${assetId}/readings`)
        .set('Authorization', scada)
        .send({ readings: rows.map((values) => ({ timestamp: new Date((t += 1000)).toISOString(), values })) })
        .expect(200);
    };
    /** Every stored alarm, oldest first. */
    const stored = async (): Promise<StoredAlarm[]> => {
      const res = await request(a.getHttpServer()).get('/v1/manufacturing/alarms').set('Authorization', operator);
      assert.equal(res.status, 200);
      return (res.body as { alarms: StoredAlarm[] }).alarms
        .reverse()
        .map(({ id, assetId, state, at }) => ({ id, assetId, state, at }));
    };
    /** The listener connections' backend pids (those that have run their LISTEN). */
    const listeners = async (): Promise<number[]> =>
      (
        await watch.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%' ORDER BY pid`,
          [LISTENER],
        )
      ).rows.map((r) => r.pid);

    before(async () => {
      scratch = await createScratchDatabase(DATABASE_URL!, 'gateway_alarm_live');
      modelsDir = bundledModelsDir(['manufacturing']);
      a = await createTestApp({ DATABASE_URL: scratch.url, MODELS_DIR: modelsDir, AUDIT_WRITER_ID: 'gateway-a' });
      b = await createTestApp({ DATABASE_URL: scratch.url, MODELS_DIR: modelsDir, AUDIT_WRITER_ID: 'gateway-b' });
      await a.listen(0, '127.0.0.1');
      await b.listen(0, '127.0.0.1');
      portA = (a.getHttpServer().address() as AddressInfo).port;
      portB = (b.getHttpServer().address() as AddressInfo).port;
      watch = new Client({ connectionString: scratch.url });
      await watch.connect();
      await request(b.getHttpServer())
        .put('/v1/manufacturing/assets/mill-b')
        .set('Authorization', admin)
        .send(millAsset('mill-b'))
        .expect(200);
      await request(a.getHttpServer())
        .put('/v1/manufacturing/assets/mill-a')
        .set('Authorization', admin)
        .send(millAsset('mill-a'))
        .expect(200);
    });
    after(async () => {
      await watch?.end();
      await a?.close();
      await b?.close();
      if (modelsDir) rmSync(modelsDir, { recursive: true, force: true });
      await scratch?.drop();
    });

    // Before, a gateway learnt of another's alarms only from the table: before its own next alarm (a catch-up read) or
    // at the client's reconnect. An operator watching gateway A while gateway B raised a fault saw nothing.
    it("an alarm raised through gateway B reaches gateway A's stream with no alarm on A, once, as B's own stream sends it", async () => {
      assert.deepEqual(await listeners(), [], 'no listener while no stream is open');
      const onA = alarmStream(portA, operator);
      const onB = alarmStream(portB, operator);
      await Promise.all([onA.ready, onB.ready]);
      await until('both gateways listening', async () => ((await listeners()).length === 2 ? true : undefined));
      // The probe after LISTEN came back: no periodic read (that is for a pooler in transaction mode).
      await until('notifications delivered', async () => {
        const res = await request(a.getHttpServer()).get('/health/ready').set('Authorization', admin);
        const detail = (res.body as { checks: Record<string, { detail?: { notifications?: string } }> }).checks[
          'alarm-notifications'
        ]?.detail;
        return detail?.notifications === 'delivered' ? true : undefined;
      });
      await ingest(b, 'mill-b', true);
      const raised = await stored();
      assert.ok(raised.length > 0, 'B raised its alarm');
      assert.ok(
        raised.every((r) => r.assetId === 'mill-b'),
        'only B stored alarms',
      );
      await until(
        'the alarm on A',
        () => (streamedAlarms(onA.received).length >= raised.length ? true : undefined),
        10_000,
      );
      assert.deepEqual(streamedAlarms(onA.received), raised);

      // A's own alarms are streamed as they are stored, and not again when their notification is read back; B's
      // cleared alarm comes live too, each in insert order, whichever gateway stored it.
      await ingest(a, 'mill-a', true);
      await ingest(b, 'mill-b', false);
      await ingest(a, 'mill-a', false);
      // Last, one more of B's: anything of the alarms before it sent twice is sent before it.
      await ingest(b, 'mill-b', true);
      const all = await stored();
      const last = all.at(-1)!.id;
      assert.deepEqual(new Set(all.map((r) => r.assetId)), new Set(['mill-a', 'mill-b']));
      const sent = (stream: ReturnType<typeof alarmStream>) => stream.received.some((e) => e.id === last);
      await until('every alarm on A', () => (sent(onA) ? true : undefined), 10_000);
      await until('every alarm on B', () => (sent(onB) ? true : undefined), 10_000);
      onA.close();
      onB.close();
      assert.deepEqual(streamedAlarms(onA.received), all, 'A sends every alarm once, in insert order');
      assert.deepEqual(streamedAlarms(onB.received), all, 'B sends every alarm once, in insert order');
      // The same event, whichever gateway sends it: the data B sends of its own alarm is what A sends of it.
      const firstOf = (received: ReceivedEvent[]) => received.find((e) => e.type === 'alarm');
      assert.deepEqual(firstOf(onA.received), firstOf(onB.received));
      await Promise.all([onA.ended, onB.ended]);
      await until('the listeners closed with the last stream', async () =>
        (await listeners()).length === 0 ? true : undefined,
      );
    });

    it('an alarm stored while the listener connection is down is sent once it listens again', async () => {
      const onA = alarmStream(portA, operator);
      await onA.ready;
      const [pid] = await until('A listening', async () => {
        const pids = await listeners();
        return pids.length === 1 ? pids : undefined;
      });
      const before = (await stored()).length;
      await watch.query('SELECT pg_terminate_backend($1)', [pid]);
      await until('the listener gone', async () => ((await listeners()).includes(pid) ? undefined : true));
      // Stored by B while A does not listen (it waits at least 750 ms before it connects again): its notification
      // reaches no one on A.
      const id = await b.get(PlantRecordsRepository).addAlarm({
        assetId: 'mill-b',
        state: 'raised',
        metric: 'failure',
        value: 0.9,
        threshold: 0.5,
        at: new Date(),
        site: 'plant-1',
        line: 'line-b',
        modelName: 'machine-failure',
        modelVersion: '1',
        reason: null,
      });
      assert.deepEqual(await listeners(), [], 'stored while A did not listen');
      const [again] = await until('A listening again', async () => {
        const pids = await listeners();
        return pids.length === 1 ? pids : undefined;
      });
      assert.notEqual(again, pid);
      await until('the alarm stored meanwhile on A', () => (onA.received.some((e) => e.id === id) ? true : undefined));
      const all = await stored();
      assert.equal(all.length, before + 1);
      onA.close();
      // A fresh stream starts at the newest id: that alarm, and only it, came after.
      assert.deepEqual(streamedAlarms(onA.received), all.slice(before));
    });

    // A failover drops every dashboard at once and they reconnect together: before, each replay was a read of its own
    // (each taking the alarm order lock that every gateway's alarm inserts wait on).
    it('serves many reconnects at once with a shared read, each stream exactly the alarms it missed, in order', async () => {
      await storeAlarms(b.get(PlantRecordsRepository), 30, ['mill-a', 'mill-b'], T0);
      const all = await stored();
      const lastIds = Array.from({ length: 60 }, (_, i) => all[(i * 7) % all.length].id);
      // The server slow to answer the first replay (as after a failover): the reconnects meanwhile wait for one read.
      const reads = await massReconnect(a.get(PlantRecordsRepository), portA, operator, lastIds, all);
      // The listener's first LISTEN is read after too (what was notified before it), shared the same way. A burst can
      // take two reads of the missed alarms and two of the newest id (a replay that found nothing checks it after),
      // plus the listener's: a few, where each of the 60 streams made its own (63 before the reads were shared).
      assert.ok(reads <= 6, `a few shared reads, not one per stream: ${reads}`);
    });

    // The listener's connection would hold the process open after the HTTP server and the pool are closed.
    it('a gateway closed with a stream open ends the stream and closes its listener', async () => {
      const c = await createTestApp({ DATABASE_URL: scratch.url, MODELS_DIR: modelsDir, AUDIT_WRITER_ID: 'gateway-c' });
      await c.listen(0, '127.0.0.1');
      const onC = alarmStream((c.getHttpServer().address() as AddressInfo).port, operator);
      await onC.ready;
      await until('C listening', async () => ((await listeners()).length === 1 ? true : undefined));
      await c.close();
      assert.deepEqual(await onC.ended, { complete: true }, 'the stream ended by the gateway');
      await until('the listener closed', async () => ((await listeners()).length === 0 ? true : undefined));
    });
  },
);
