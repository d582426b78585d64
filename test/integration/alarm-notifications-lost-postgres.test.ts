import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it, mock } from 'node:test';
import { Logger } from '@nestjs/common';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Client } from 'pg';
import request from 'supertest';
import { alarmInsertSql } from '../../src/domains/manufacturing/records/plant-records.repository';
import { alarmStream } from '../fixtures/alarm-stream';
import { DatabaseProxy } from '../fixtures/database-proxy';
import { bundledModelsDir } from '../fixtures/paths';
import { DATASETS_SKIP } from '../fixtures/plant-data';
import { createScratchDatabase, ScratchDatabase } from '../fixtures/scratch-database';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';
import { until } from '../fixtures/until';

const DATABASE_URL = process.env.DATABASE_URL;
/** The alarm listener's connection, as pg_stat_activity names it (clientConfigOf). */
const LISTENER = 'inference-gateway-alarm-listener';

// PgBouncer in transaction mode takes LISTEN's session back at once: LISTEN succeeds, no notification ever comes,
// and PostgreSQL says nothing. Before, another gateway's alarm then reached a stream only before this gateway's next
// alarm or at the client's reconnect, and nothing said why. PgBouncer is not run here: a proxy that drops the
// server's notifications (and nothing else) plays it, in front of the real server.
describe(
  'the alarm stream on a PostgreSQL server whose notifications never arrive (a pooler in transaction mode)',
  { skip: DATABASE_URL ? DATASETS_SKIP : 'DATABASE_URL is not set' },
  () => {
    let scratch: ScratchDatabase;
    let proxy: DatabaseProxy;
    let modelsDir: string;
    let app: NestFastifyApplication;
    let port: number;
    let watch: Client;
    const operator = bearer(tokenFor(['plant-operator']));
    const admin = bearer(tokenFor(['ml-admin']));
    /** Every warning logged (LOG_LEVEL error prints none). */
    const warn = mock.method(Logger.prototype, 'warn');
    const unheardWarnings = () =>
      warn.mock.calls.filter((call) => /notifications are not delivered/.test(JSON.stringify(call.arguments[0])));

    before(async () => {
      scratch = await createScratchDatabase(DATABASE_URL!, 'gateway_alarm_unheard');
      proxy = new DatabaseProxy(new URL(scratch.url), { dropNotifications: true });
      const proxied = new URL(scratch.url);
      proxied.hostname = '127.0.0.1';
      proxied.port = String(await proxy.listen());
      modelsDir = bundledModelsDir(['manufacturing']);
      app = await createTestApp({
        DATABASE_URL: proxied.toString(),
        MODELS_DIR: modelsDir,
        AUDIT_WRITER_ID: 'gateway-a',
      });
      await app.listen(0, '127.0.0.1');
      port = (app.getHttpServer().address() as AddressInfo).port;
      watch = new Client({ connectionString: scratch.url });
      await watch.connect();
    });
    after(async () => {
      warn.mock.restore();
      await watch?.end();
      await app?.close();
      await proxy?.close();
      if (modelsDir) rmSync(modelsDir, { recursive: true, force: true });
      await scratch?.drop();
    });

    const notifications = async (): Promise<Record<string, unknown> | undefined> => {
      const res = await request(app.getHttpServer()).get('/health/ready').set('Authorization', admin);
      const checks = (res.body as { checks: Record<string, { ready: boolean; detail?: Record<string, unknown> }> })
        .checks;
      assert.equal(checks['alarm-notifications']?.ready, true, 'informative: never not ready');
      return checks['alarm-notifications'].detail;
    };

    it("says so in /health/ready and still streams another gateway's alarm, by a periodic read", async () => {
      assert.deepEqual(await notifications(), { notifications: 'not-listening' });
      const stream = alarmStream(port, operator);
      await stream.ready;
      await until('the listener listening', async () => {
        const { rows } = await watch.query(
          `SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%'`,
          [LISTENER],
        );
        return rows.length === 1 ? true : undefined;
      });
      // The probe does not come back within 5 s.
      const detail = await until(
        'notifications said not delivered',
        async () => {
          const d = await notifications();
          return d?.notifications === 'not-delivered' ? d : undefined;
        },
        15_000,
      );
      assert.match(String(detail.why), /pooler in transaction mode/);
      assert.match(String(detail.instead), /every 5000 ms/);

      // Another gateway's alarm, stored (and notified) as its insert does: the notification is lost on the way.
      const { rows } = await watch.query<{ id: string }>(alarmInsertSql(true, 'f00d'), [
        'mill-b',
        'raised',
        'failure',
        0.9,
        0.5,
        new Date().toISOString(),
        'plant-1',
        'line-b',
        'machine-failure',
        '1',
        null,
      ]);
      const id = rows[0].id;
      await until(
        'the alarm on the stream',
        () => (stream.received.some((e) => e.id === id) ? true : undefined),
        15_000,
      );
      assert.equal(unheardWarnings().length, 1, 'one warning, not one per periodic read');
      assert.match(JSON.stringify(unheardWarnings()[0].arguments[0]), /pooler in transaction mode/);
      stream.close();
      const sent = stream.received.filter((e) => e.type === 'alarm');
      assert.deepEqual(
        sent.map((e) => [e.id, e.data?.assetId]),
        [[id, 'mill-b']],
        'sent once',
      );
      await stream.ended;
      await until('not listening once the last stream is gone', async () =>
        (await notifications())?.notifications === 'not-listening' ? true : undefined,
      );
    });
  },
);
