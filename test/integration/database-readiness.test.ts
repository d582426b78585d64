import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { DatabaseProxy } from '../fixtures/database-proxy';
import { createScratchDatabase, ScratchDatabase } from '../fixtures/scratch-database';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';
import { until } from '../fixtures/until';

const DATABASE_URL = process.env.DATABASE_URL;

/**
 * /health/ready follows the database with no traffic at all: a server that goes away is seen by the next
 * check (DATABASE_CHECK_INTERVAL_MS), not by the first request refused for it, and one that comes back the
 * same way. The server sits behind a proxy that cuts every connection and refuses new ones.
 */
describe(
  'readiness follows the database without traffic (PostgreSQL server)',
  {
    skip: DATABASE_URL ? false : 'DATABASE_URL is not set',
  },
  () => {
    let scratch: ScratchDatabase;
    let proxy: DatabaseProxy;
    let app: NestFastifyApplication;
    const ready = () =>
      request(app.getHttpServer())
        .get('/health/ready')
        .set('Authorization', bearer(tokenFor(['ml-admin'])));

    /** The readiness gauge of the database check, as Prometheus scrapes it. */
    const databaseGauge = async (): Promise<string | undefined> => {
      const text = (
        await request(app.getHttpServer())
          .get('/metrics')
          .set('Authorization', bearer(tokenFor(['monitoring'])))
          .expect(200)
      ).text;
      return /^gateway_readiness_check\{check="database"\} (\d)$/m.exec(text)?.[1];
    };

    before(async () => {
      scratch = await createScratchDatabase(DATABASE_URL!, 'gateway_readiness');
      const target = new URL(scratch.url);
      proxy = new DatabaseProxy(target);
      const viaProxy = new URL(scratch.url);
      viaProxy.hostname = '127.0.0.1';
      viaProxy.port = String(await proxy.listen());
      app = await createTestApp({ DATABASE_URL: viaProxy.toString(), DATABASE_CHECK_INTERVAL_MS: '200' });
    });
    after(async () => {
      proxy?.restore();
      await app?.close();
      await proxy?.close();
      await scratch?.drop();
    });

    it('turns 503 naming the database when it goes away, and ready again when it is back', async () => {
      const first = await ready().expect(200);
      assert.deepEqual(first.body.checks.database, { ready: true });
      assert.equal(await databaseGauge(), '1');

      proxy.cut();
      const down = await until('readiness to see the database gone', async () => {
        const res = await ready();
        return res.status === 503 ? res : undefined;
      });
      assert.deepEqual(down.body.checks.database, { ready: false, detail: 'the database is unavailable' });
      // Nothing was committed or asked meanwhile: the audit trail has not failed, the check alone saw it.
      assert.deepEqual(down.body.checks.audit, { ready: true });
      assert.equal(await databaseGauge(), '0');

      proxy.restore();
      const back = await until('readiness to see the database back', async () => {
        const res = await ready();
        return res.status === 200 ? res : undefined;
      });
      assert.deepEqual(back.body.checks.database, { ready: true });
      assert.equal(await databaseGauge(), '1');
    });
  },
);
