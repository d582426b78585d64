import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { createTestApp } from '../fixtures/test-app';
import { auditReadinessFor, firstRefusalOnFullDisk, smallDisk } from '../fixtures/small-disk';
import { freshDataDir } from '../fixtures/test-data-dir';
import { until } from '../fixtures/until';
import { bearer, tokenFor } from '../fixtures/test-auth';

/** Room for the empty embedded database (about 40 MB) and what the boot writes. */
const DISK_SIZE = '64m';

describe('a full disk under the audit trail (embedded database on a small tmpfs)', () => {
  it('is answered 503 "audit database out of disk space" with Retry-After, readiness says so while the disk is full, and both recover by themselves once space is freed', async (t) => {
    const disk = smallDisk(DISK_SIZE);
    if (!disk) {
      t.skip('needs to mount a tmpfs (root with CAP_SYS_ADMIN)');
      return;
    }
    let app: NestFastifyApplication | undefined;
    try {
      app = await createTestApp({ DATA_DIR: await freshDataDir(disk.dir) });
      const http = request(app.getHttpServer());
      const auditor = bearer(tokenFor(['auditor'], { sub: 'disk-full-test' }));
      const read = () => http.get('/v1/audit/events?limit=1').set('Authorization', auditor);
      await read().expect(200);
      const { refused, free } = await firstRefusalOnFullDisk(disk, read);
      assert.ok(refused, 'no commit failed on a full disk');
      assert.equal(refused.status, 503, JSON.stringify(refused.body));
      assert.match(String(refused.headers['content-type']), /^application\/problem\+json/);
      assert.equal(refused.headers['retry-after'], '1');
      assert.equal(refused.body.code, 'AUDIT_UNAVAILABLE');
      assert.equal(
        refused.body.detail,
        'the audit trail cannot be written (audit database out of disk space); nothing was decided',
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
    } finally {
      await app?.close();
      disk.remove();
    }
  });
});
