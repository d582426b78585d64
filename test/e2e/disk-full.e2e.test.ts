import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { describe, it, type TestContext } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { createTestApp } from '../fixtures/test-app';
import { auditReadinessFor, firstRefusalOnFullDisk, SmallDisk, smallDisk } from '../fixtures/small-disk';
import { freshDataDir } from '../fixtures/test-data-dir';
import { until } from '../fixtures/until';
import { bearer, tokenFor } from '../fixtures/test-auth';

/** Room for the empty embedded database (about 40 MB) and what the boot writes. */
const DISK_SIZE = '64m';

interface OnSmallDisk {
  disk: SmallDisk;
  app: NestFastifyApplication;
  http: ReturnType<typeof request>;
  /** An auditor's Authorization header (its subject is the test's). */
  auditor: string;
  /** An audited request that reads one audit event: it needs a commit. */
  read: () => request.Test;
}

/**
 * Runs `body` against a gateway whose data directory (embedded database) is on a small tmpfs of its own, then
 * closes it and removes the tmpfs; skips the test where no tmpfs can be mounted.
 */
async function onSmallDisk(t: TestContext, subject: string, body: (on: OnSmallDisk) => Promise<void>): Promise<void> {
  const disk = smallDisk(DISK_SIZE);
  if (!disk) {
    t.skip('needs to mount a tmpfs (root with CAP_SYS_ADMIN)');
    return;
  }
  let app: NestFastifyApplication | undefined;
  try {
    app = await createTestApp({ DATA_DIR: await freshDataDir(disk.dir) });
    const http = request(app.getHttpServer());
    const auditor = bearer(tokenFor(['auditor'], { sub: subject }));
    const read = () => http.get('/v1/audit/events?limit=1').set('Authorization', auditor);
    await body({ disk, app, http, auditor, read });
  } finally {
    await app?.close();
    disk.remove();
  }
}

describe('a full disk under the audit trail (embedded database on a small tmpfs)', () => {
  it('is answered 503 "audit database out of disk space" with Retry-After, readiness says so while the disk is full, and both recover by themselves once space is freed', async (t) => {
    await onSmallDisk(t, 'disk-full-test', async ({ disk, app, http, auditor, read }) => {
      await read().expect(200);
      const { refused, free } = await firstRefusalOnFullDisk(disk, read);
      assert.ok(refused, 'no commit failed on a full disk');
      assert.equal(refused.status, 503, JSON.stringify(refused.body));
      assert.match(String(refused.headers['content-type']), /^application\/problem\+json/);
      assert.equal(refused.headers['retry-after'], '1');
      assert.equal(refused.body.code, 'AUDIT_UNAVAILABLE');
      assert.equal(
        refused.body.detail,
        'the audit trail cannot be written (audit database out of disk space); no answer leaves without its audit row: send the request again',
      );
      const ready = await http.get('/health/ready').set('Authorization', auditor).expect(503);
      assert.deepEqual(ready.body.checks.audit, { ready: false, detail: 'audit database out of disk space' });

      // The recovery probe runs each second: a full disk still answers SELECT 1, not a write.
      const whileFull = await auditReadinessFor(app, 3000);
      assert.deepEqual(
        whileFull.filter((check) => check.ready),
        [],
        'readiness turned ready while the disk was still full',
      );

      free();
      // No client traffic: readiness recovers through the probe alone.
      await until('readiness once space is freed', async () =>
        (await http.get('/health/ready')).status === 200 ? true : undefined,
      );
      await read().expect(200);
    });
  });

  it('restarts the embedded database by itself after a PANIC (no room for a new WAL segment): prompt 503s meanwhile, never a hang, and once space is freed service returns with every answered request in a valid chain', async (t) => {
    await onSmallDisk(t, 'panic-test', async ({ disk, app, http, auditor, read }) => {
      const answered: string[] = [];
      const readOk = async (): Promise<void> => {
        const res = await read().expect(200);
        answered.push(String(res.headers['x-request-id']));
      };
      for (let i = 0; i < 3; i++) await readOk();

      const filler = disk.fill();
      // The current WAL segment is closed; the next write needs a new one, which the full disk refuses: PANIC.
      await app.get(DataSource).query('SELECT pg_switch_wal()');
      const started = Date.now();
      const refused = await read();
      assert.equal(refused.status, 503, JSON.stringify(refused.body));
      assert.equal(refused.body.code, 'AUDIT_UNAVAILABLE');
      // While the disk stays full the database cannot start again: every answer is a prompt refusal.
      for (let i = 0; i < 5; i++) {
        const res = await read();
        assert.equal(res.status, 503, JSON.stringify(res.body));
        await new Promise((later) => setTimeout(later, 300));
      }
      assert.ok(Date.now() - started < 10_000, `refusals took ${Date.now() - started} ms: a hang, not a refusal`);
      assert.equal((await http.get('/health/ready')).status, 503);

      rmSync(filler);
      await until(
        'service after the embedded database restarts',
        async () => ((await read()).status === 200 ? true : undefined),
        45_000,
      );
      await until('readiness', async () => ((await http.get('/health/ready')).status === 200 ? true : undefined));
      for (let i = 0; i < 3; i++) await readOk();

      const report = (await http.get('/v1/audit/verify').set('Authorization', auditor).expect(200)).body;
      assert.equal(report.valid, true, JSON.stringify(report));
      assert.equal(report.firstBroken, null);
      const rows = (
        await http.get('/v1/audit/events?actor=panic-test&limit=100').set('Authorization', auditor).expect(200)
      ).body.events as Array<{ requestId: string }>;
      const recorded = rows.map((row) => row.requestId);
      for (const requestId of answered) {
        assert.equal(recorded.filter((id) => id === requestId).length, 1, `answered request ${requestId}: not one row`);
      }
    });
  });
});
