import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { data as dcmjsData, log as dcmjsLog } from 'dcmjs';
import { connectAsync, MqttClient } from 'mqtt';
import { Client } from 'pg';
import request from 'supertest';
import { DICOM_SKIP, dicomFile, multipartRelated } from '../fixtures/dicom-files';
import { tx } from '../fixtures/finance-data';
import { PlantMqttService } from '../../src/domains/manufacturing/mqtt/plant-mqtt.service';
import { bundledModelsDir } from '../fixtures/paths';
import { ai4iReadings, DATASETS_SKIP, millAsset } from '../fixtures/plant-data';
import { createScratchDatabase, ScratchDatabase } from '../fixtures/scratch-database';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';
import { until } from '../fixtures/until';

const DATABASE_URL = process.env.DATABASE_URL;
dcmjsLog.setLevel('silent');

/** A statement waiting this long is cancelled by the server (SQLSTATE 57014), set on the scratch database only. */
const STATEMENT_TIMEOUT = '1s';

/**
 * The domains' own queries when the database server fails them while the audit trail still commits
 * (its commit thread has connections of its own): a session killed in the middle of a statement
 * (pg_terminate_backend) and a statement cancelled by statement_timeout are each answered 503
 * problem+json with Retry-After, never a 500, and the next request is served (no restart).
 */
describe(
  'database failures under the domains (PostgreSQL server)',
  { skip: DATABASE_URL ? false : 'DATABASE_URL is not set' },
  () => {
    let scratch: ScratchDatabase;
    let app: NestFastifyApplication;
    let modelsDir: string;
    const http = () => request(app.getHttpServer());

    before(async () => {
      scratch = await createScratchDatabase(DATABASE_URL!, 'gateway_outage');
      const admin = new Client({ connectionString: DATABASE_URL });
      await admin.connect();
      try {
        await admin.query(
          `ALTER DATABASE ${new URL(scratch.url).pathname.slice(1)} SET statement_timeout = '${STATEMENT_TIMEOUT}'`,
        );
      } finally {
        await admin.end();
      }
      modelsDir = bundledModelsDir(DICOM_SKIP ? ['finance', 'manufacturing'] : ['finance', 'manufacturing', 'medical']);
      app = await createTestApp({ DATABASE_URL: scratch.url, MODELS_DIR: modelsDir });
    });
    after(async () => {
      await app?.close();
      await scratch?.drop();
      if (modelsDir) rmSync(modelsDir, { recursive: true, force: true });
    });

    /**
     * Sends the request while `table` is locked, so that the gateway's statement on it waits; then kills
     * that statement's session, or lets statement_timeout cancel it, and lets the lock go.
     */
    async function failed(
      table: string,
      how: 'killed' | 'timed out',
      send: () => request.Test,
    ): Promise<request.Response> {
      // The lock is held in a transaction; the gateway's sessions are watched from outside one, since
      // pg_stat_activity stays as first read for the rest of a transaction.
      const locker = new Client({ connectionString: scratch.url, application_name: 'outage-test' });
      const watcher = new Client({ connectionString: scratch.url, application_name: 'outage-test' });
      await locker.connect();
      await watcher.connect();
      const waiting = async (): Promise<number | undefined> => {
        const { rows } = await watcher.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity WHERE datname = current_database()
             AND application_name = 'inference-gateway' AND wait_event_type = 'Lock'`,
        );
        return rows[0]?.pid;
      };
      try {
        await locker.query('BEGIN');
        await locker.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
        let settled = false;
        const answer = Promise.resolve(send()).finally(() => (settled = true));
        // An answer that came without waiting for the table is returned as it is, for the caller to assert on.
        const pid = await until(`a gateway statement waiting for ${table}`, async () => (settled ? 0 : waiting()));
        if (how === 'killed' && pid !== 0) {
          const { rows } = await watcher.query<{ killed: boolean }>('SELECT pg_terminate_backend($1) AS killed', [pid]);
          assert.equal(rows[0].killed, true, 'the waiting session was killed');
        }
        // The lock goes as soon as the statement failed: the request's own audit row may need the table.
        await until(`the statement on ${table} ${how}`, async () => ((await waiting()) === pid ? undefined : true));
        await locker.query('ROLLBACK');
        return await answer;
      } finally {
        await locker.query('ROLLBACK').catch(() => undefined);
        await locker.end();
        await watcher.end();
      }
    }

    function assertUnavailable(res: request.Response, what: string): void {
      assert.equal(res.status, 503, `${what}: ${res.status} ${JSON.stringify(res.body)}`);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/, what);
      assert.equal(res.headers['retry-after'], '1', what);
      assert.equal(res.body.code, 'STORAGE_UNAVAILABLE', what);
      assert.doesNotMatch(
        JSON.stringify(res.body),
        /gateway_outage|terminat|statement timeout/,
        `${what}: driver text leaked`,
      );
    }

    it('finance: an Idempotency-Key claim the database fails is a 503 with Retry-After; the retry is scored and kept', async () => {
      const risk = bearer(tokenFor(['risk-engine'], { sub: 'outage-risk' }));
      const score = (key: string) =>
        http().post('/v1/finance/fraud-scores').set('Authorization', risk).set('Idempotency-Key', key).send(tx());
      for (const how of ['killed', 'timed out'] as const) {
        const key = `outage-${how.replace(' ', '-')}`;
        assertUnavailable(await failed('idempotency_keys', how, () => score(key)), `claim ${how}`);
        const first = await score(key).expect(200);
        assert.equal(first.headers['idempotent-replayed'], undefined);
        const again = await score(key).expect(200);
        assert.equal(again.headers['idempotent-replayed'], 'true');
        assert.deepEqual(again.body, first.body);
      }
    });

    it(
      'medical: STOW-RS findings the database does not keep, and a findings read it fails, are 503s with Retry-After',
      { skip: DICOM_SKIP },
      async () => {
        const pacs = bearer(tokenFor(['pacs-integration'], { sub: 'outage-pacs' }));
        const instance = dicomFile('US1_UNCR.dcm');
        const ab = instance.buffer.slice(instance.byteOffset, instance.byteOffset + instance.byteLength) as ArrayBuffer;
        const studyUid = String(dcmjsData.DicomMessage.readFile(ab).dict['0020000D'].Value?.[0]);
        const { body, contentType } = multipartRelated([instance]);
        const stow = () =>
          http().post('/dicomweb/studies').set('Authorization', pacs).set('Content-Type', contentType).send(body);
        const findings = () => http().get(`/v1/medical/studies/${studyUid}/findings`).set('Authorization', pacs);

        for (const how of ['killed', 'timed out'] as const) {
          assertUnavailable(await failed('medical_findings', how, stow), `STOW-RS, ${how}`);
        }
        // Sent again: kept.
        await stow().expect(200);
        for (const how of ['killed', 'timed out'] as const) {
          assertUnavailable(await failed('medical_findings', how, findings), `findings, ${how}`);
        }
        const kept = await findings().expect(200);
        assert.equal(kept.body.instances.length, 1);
      },
    );
    it('manufacturing: an asset the database does not save or remove is a 503 with Retry-After, and the registry is as it was', async () => {
      const admin = bearer(tokenFor(['ml-admin', 'plant-operator'], { sub: 'outage-admin' }));
      const put = (alarm?: { raiseAt: number; clearAt: number; consecutive: number }) =>
        http()
          .put('/v1/manufacturing/assets/outage-mill')
          .set('Authorization', admin)
          .send(millAsset('outage-mill', alarm));
      const remove = () => http().delete('/v1/manufacturing/assets/outage-mill').set('Authorization', admin);
      const alarmOf = async (): Promise<{ raiseAt: number }> =>
        (await http().get('/v1/manufacturing/assets/outage-mill').set('Authorization', admin).expect(200)).body
          .alarm as { raiseAt: number };

      await put().expect(200);
      const changed = { raiseAt: 0.8, clearAt: 0.6, consecutive: 3 };
      for (const how of ['killed', 'timed out'] as const) {
        assertUnavailable(await failed('manufacturing_assets', how, () => put(changed)), `PUT, ${how}`);
        assert.equal((await alarmOf()).raiseAt, 0.5, 'the registry kept the saved asset');
        assertUnavailable(await failed('manufacturing_assets', how, remove), `DELETE, ${how}`);
        await alarmOf();
      }
      await put(changed).expect(200);
      assert.equal((await alarmOf()).raiseAt, 0.8);
      await remove().expect(204);
      await http().get('/v1/manufacturing/assets/outage-mill').set('Authorization', admin).expect(404);
    });
    it('manufacturing: predictions, alarms and dead letters the database fails to read are 503s with Retry-After', async () => {
      const admin = bearer(tokenFor(['ml-admin', 'plant-operator'], { sub: 'outage-reader' }));
      await http()
        .put('/v1/manufacturing/assets/outage-reads')
        .set('Authorization', admin)
        .send(millAsset('outage-reads'))
        .expect(200);
      const reads: Array<[string, string]> = [
        ['manufacturing_predictions', '/v1/manufacturing/assets/outage-reads/predictions'],
        ['manufacturing_alarms', '/v1/manufacturing/alarms?assetId=outage-reads'],
        ['manufacturing_dead_letters', '/v1/manufacturing/dead-letters'],
      ];
      for (const [table, path] of reads) {
        const read = () => http().get(path).set('Authorization', admin);
        for (const how of ['killed', 'timed out'] as const) {
          assertUnavailable(await failed(table, how, read), `${path}, ${how}`);
        }
        await read().expect(200);
      }
    });
    it('manufacturing: an alarm stream whose replay the database fails ends, saying so, for the client to reconnect', async () => {
      const operator = bearer(tokenFor(['plant-operator'], { sub: 'outage-stream' }));
      for (const lastEventId of [undefined, '0']) {
        for (const how of ['killed', 'timed out'] as const) {
          // Its audit row is committed first (200); the replay's read, after, is what fails.
          const res = await failed('manufacturing_alarms', how, () => {
            const open = http().get('/v1/manufacturing/alarms/stream').set('Authorization', operator);
            return lastEventId === undefined ? open : open.set('Last-Event-ID', lastEventId);
          });
          const what = `Last-Event-ID ${lastEventId}, ${how}`;
          assert.equal(res.status, 200, what);
          assert.match(res.text, /^: the stored alarms could not be read; reconnect$/m, what);
          assert.doesNotMatch(res.text, /^(id|data|event):/m, `${what}: nothing but the comment`);
        }
      }
    });
    it('audit: events and verify the database fails to read are 503s with Retry-After', async () => {
      const auditor = bearer(tokenFor(['auditor'], { sub: 'outage-auditor' }));
      for (const path of ['/v1/audit/events', '/v1/audit/verify']) {
        const read = () => http().get(path).set('Authorization', auditor);
        await read().expect(200);
        for (const how of ['killed', 'timed out'] as const) {
          assertUnavailable(await failed('audit_events', how, read), `${path}, ${how}`);
        }
        await read().expect(200);
      }
      const report = (await http().get('/v1/audit/verify').set('Authorization', auditor).expect(200)).body;
      assert.equal(report.valid, true);
    });
  },
);

const MQTT_URL = process.env.MQTT_URL;
const MQTT_SKIP = !DATABASE_URL ? 'DATABASE_URL is not set' : !MQTT_URL ? 'MQTT_URL is not set' : DATASETS_SKIP;

/**
 * MQTT while the database refuses connections (ALLOW_CONNECTIONS false, its sessions killed): each
 * message whose predictions are kept is left unacknowledged, and the broker sends no more than Receive
 * Maximum (MQTT_MAX_IN_FLIGHT) of those at once. Once the database is back, every reading published,
 * before, during and after, ends with its prediction stored, without a restart.
 */
describe('MQTT ingestion across a database outage (PostgreSQL server, Mosquitto)', { skip: MQTT_SKIP }, () => {
  const clientId = `gateway-outage-${process.pid}-${Date.now()}`;
  const topic = 'factory/plant-1/line-b/outage-mqtt/telemetry';
  let scratch: ScratchDatabase;
  let name: string;
  let app: NestFastifyApplication;
  let modelsDir: string;
  let publisher: MqttClient;

  /** Runs SQL on the server (not the scratch database, which may be refusing connections). */
  async function onServer(sql: string): Promise<void> {
    const admin = new Client({ connectionString: DATABASE_URL });
    await admin.connect();
    try {
      await admin.query(sql);
    } finally {
      await admin.end();
    }
  }
  async function stored(): Promise<number> {
    const db = new Client({ connectionString: scratch.url });
    await db.connect();
    try {
      const { rows } = await db.query<{ n: string }>(
        `SELECT count(*) AS n FROM manufacturing_predictions WHERE asset_id = 'outage-mqtt'`,
      );
      return Number(rows[0].n);
    } finally {
      await db.end();
    }
  }

  before(async () => {
    scratch = await createScratchDatabase(DATABASE_URL!, 'gateway_outage_mqtt');
    name = new URL(scratch.url).pathname.slice(1);
    modelsDir = bundledModelsDir(['manufacturing']);
    app = await createTestApp({
      DATABASE_URL: scratch.url,
      MODELS_DIR: modelsDir,
      MQTT_URL: MQTT_URL!,
      MQTT_CLIENT_ID: clientId,
      MQTT_MAX_IN_FLIGHT: '4',
    });
    await app.get(PlantMqttService).subscribed;
    publisher = await connectAsync(MQTT_URL!, { clientId: `${clientId}-pub`, clean: true });
  });
  after(async () => {
    // Whatever happened, the database takes connections again before it is dropped.
    if (name) await onServer(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
    await app?.close();
    await publisher?.endAsync();
    // Drop the gateway's persistent session so the broker does not keep queueing for it.
    if (MQTT_URL) await (await connectAsync(MQTT_URL, { clientId, clean: true })).endAsync();
    await scratch?.drop();
    if (modelsDir) rmSync(modelsDir, { recursive: true, force: true });
  });

  it('messages left unacknowledged while the database was away do not stop the stream once it is back', async () => {
    await request(app.getHttpServer())
      .put('/v1/manufacturing/assets/outage-mqtt')
      .set('Authorization', bearer(tokenFor(['ml-admin'])))
      .send(millAsset('outage-mqtt'))
      .expect(200);
    const values = ai4iReadings(false, 20);
    const t0 = Date.now() - 60_000;
    let sent = 0;
    const publish = () =>
      publisher.publishAsync(topic, JSON.stringify([{ timestamp: t0 + sent * 100, values: values[sent++] }]), {
        qos: 1,
      });
    await publish();
    await until('the first prediction stored', async () => ((await stored()) === 1 ? true : undefined));

    await onServer(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`);
    try {
      await onServer(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${name}'`);
      // Twice the in-flight window: the broker holds back the rest behind those left unacknowledged.
      for (let i = 0; i < 8; i++) await publish();
      const unacked = async () =>
        (
          await request(app.getHttpServer())
            .get('/metrics')
            .set('Authorization', bearer(tokenFor(['monitoring'])))
        ).text.match(/^gateway_mqtt_messages_total\{kind="json",outcome="unacked"\} (\d+)/m)?.[1];
      await until('the in-flight window filled with unacknowledged messages', async () =>
        Number(await unacked()) >= 4 ? true : undefined,
      );
    } finally {
      await onServer(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
    }
    for (let i = 0; i < 4; i++) await publish();
    await until(
      `all ${sent} readings predicted and stored`,
      async () => ((await stored()) === sent ? true : undefined),
      60_000,
    );
  });
});
