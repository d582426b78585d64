import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { createTestApp } from '../fixtures/test-app';
import { firstRefusalOnFullDisk, smallDisk } from '../fixtures/small-disk';
import { freshDataDir } from '../fixtures/test-data-dir';
import { bearer, tokenFor } from '../fixtures/test-auth';

/** Room for the empty embedded database (about 40 MB) and what the boot writes. */
const DISK_SIZE = '64m';

describe('a full disk under the audit trail (embedded database on a small tmpfs)', () => {
  it('is answered 503 "audit database out of disk space" with Retry-After, readiness says so, and service resumes once space is freed', async (t) => {
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
      const { refused, free } = await firstRefusalOnFullDisk(app, disk, read);
      assert.ok(refused, 'no commit failed on a full disk');
      assert.equal(refused.status, 503, JSON.stringify(refused.body));
      assert.match(String(refused.headers['content-type']), /^application\/problem\+json/);
      assert.equal(refused.headers['retry-after'], '1');
      assert.equal(refused.body.code, 'AUDIT_UNAVAILABLE');
      assert.equal(
        refused.body.detail,
        'the audit trail cannot be written (audit database out of disk space); nothing was decided',
      );
      const ready = await http.get('/health/ready').expect(503);
      assert.deepEqual(ready.body.checks.audit, { ready: false, detail: 'audit database out of disk space' });

      free();
      await read().expect(200);
      await http.get('/health/ready').expect(200);
    } finally {
      await app?.close();
      disk.remove();
    }
  });
});
