import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';

describe('rate limits per subject', () => {
  let app: NestFastifyApplication;
  before(async () => {
    app = await createTestApp({ RATE_LIMIT_REQUESTS: '3', RATE_LIMIT_WINDOW_MS: '60000' });
  });
  after(() => app.close());

  it('answers 429 with Retry-After past the limit, per subject, and audits the refusal', async () => {
    const http = request(app.getHttpServer());
    const alice = bearer(tokenFor(['auditor'], { sub: 'alice' }));
    const bob = bearer(tokenFor(['auditor'], { sub: 'bob' }));
    for (let i = 0; i < 3; i++) await http.get('/v2/models').set('Authorization', alice).expect(200);
    const limited = await http.get('/v2/models').set('Authorization', alice).expect(429);
    assert.ok(Number(limited.headers['retry-after']) >= 1, `Retry-After: ${limited.headers['retry-after']}`);
    await http.get('/v2/models').set('Authorization', bob).expect(200); // another subject is not affected
    // One budget per subject, whichever route it calls.
    await http.get('/v1/audit/events').set('Authorization', alice).expect(429);
    // Health stays reachable for alice's address.
    await http.get('/health/live').expect(200);

    const audit = await http.get('/v1/audit/events?outcome=denied&actor=alice').set('Authorization', bob).expect(200);
    assert.equal(audit.body.events.length, 2);
    assert.deepEqual(
      audit.body.events.map((e: { statusCode: number }) => e.statusCode),
      [429, 429],
    );
  });
});
