import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';
import { freshDataDir } from '../fixtures/test-data-dir';

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
    // The OIP's one string leads with the field, as a 401's does.
    assert.equal(limited.body.error, 'Authorization: rate limit: more than 3 requests in 60000 ms');
    await http.get('/v2/models').set('Authorization', bob).expect(200); // another subject is not affected
    // One budget per subject, whichever route it calls; the problem names the field, as every refusal does.
    const problem = await http.get('/v1/audit/events').set('Authorization', alice).expect(429);
    assert.equal(problem.body.code, 'RATE_LIMITED');
    assert.deepEqual(problem.body.errors, [
      { field: 'Authorization', reason: "this token's subject made more than 3 requests in 60000 ms" },
    ]);
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

describe("a subject's refusals past its rate limit, audited", () => {
  it('writes the first AUTH_REFUSAL_LIMIT in a window one by one, and the rest as one summary row', async () => {
    // Windows longer than the test: which requests fall in them does not depend on the machine's pace.
    const dataDir = await freshDataDir();
    const app = await createTestApp({
      DATA_DIR: dataDir,
      RATE_LIMIT_REQUESTS: '2',
      RATE_LIMIT_WINDOW_MS: '60000',
      AUTH_REFUSAL_LIMIT: '2',
      AUTH_REFUSAL_WINDOW_MS: '600000',
    });
    try {
      const http = request(app.getHttpServer());
      const alice = bearer(tokenFor(['auditor'], { sub: 'alice' }));
      const statuses = [];
      for (let i = 0; i < 8; i++) statuses.push((await http.get('/v2/models').set('Authorization', alice)).status);
      assert.deepEqual(statuses, [200, 200, 429, 429, 429, 429, 429, 429]);
    } finally {
      await app.close();
    }
    // The summary is written at shutdown; read from the table (an auditor's token here would be limited too).
    const reopened = await createTestApp({ DATA_DIR: dataDir });
    try {
      type Row = {
        actor: string;
        status_code: number;
        client_address: string;
        output_summary: Record<string, unknown>;
      };
      const rows = await reopened.get(DataSource).query<Row[]>(
        `SELECT actor, status_code, client_address, output_summary FROM audit_events
            WHERE actor = 'alice' AND outcome = 'denied'`,
      );
      assert.equal(rows.length, 3, 'two rows of their own and one summary');
      const summary = rows.find((r) => r.output_summary.refusals !== undefined);
      assert.ok(summary, JSON.stringify(rows));
      assert.equal(summary.status_code, 429);
      assert.equal(summary.output_summary.refusals, 4);
      assert.equal(summary.output_summary.reason, 'more than 2 requests in 60000 ms');
      assert.match(summary.client_address, /127\.0\.0\.1$/);
    } finally {
      await reopened.close();
    }
  });
});

describe('rate limits per subject, whatever the body', () => {
  it('counts bodies the parsers refuse, and answers 429 past the limit before reading the body', async () => {
    const app = await createTestApp({ RATE_LIMIT_REQUESTS: '2', RATE_LIMIT_WINDOW_MS: '60000' });
    try {
      const http = request(app.getHttpServer());
      const eve = bearer(tokenFor(['risk-engine'], { sub: 'eve' }));
      const statuses = [];
      for (let i = 0; i < 4; i++) {
        const answer = await http
          .post('/v1/finance/fraud-scores')
          .set('Authorization', eve)
          .set('content-type', 'application/json')
          .send('{"truncated json');
        statuses.push(answer.status);
        if (answer.status === 429) assert.ok(Number(answer.headers['retry-after']) >= 1);
      }
      // A valid body after them is past the limit too: one window for everything the subject sends.
      statuses.push((await http.post('/v1/finance/fraud-scores').set('Authorization', eve).send({})).status);
      assert.deepEqual(statuses, [400, 400, 429, 429, 429]);
      // Another subject is not affected.
      const bob = bearer(tokenFor(['auditor'], { sub: 'bob' }));
      await http.get('/v1/audit/verify').set('Authorization', bob).expect(200);
    } finally {
      await app.close();
    }
  });
});

describe('one subject in two tenants', () => {
  it('has a rate limit in each tenant, and its refusals are audited in each apart', async () => {
    // Auth0 Organizations gives one user the same sub in each organisation it belongs to.
    const dataDir = await freshDataDir();
    const app = await createTestApp({
      DATA_DIR: dataDir,
      RATE_LIMIT_REQUESTS: '2',
      RATE_LIMIT_WINDOW_MS: '60000',
      AUTH_REFUSAL_LIMIT: '1',
      AUTH_REFUSAL_WINDOW_MS: '600000',
    });
    try {
      const http = request(app.getHttpServer());
      const calls = async (tenant: string, prefix: string, n: number) => {
        const alice = bearer(tokenFor(['auditor'], { sub: 'alice', tenant }));
        const statuses = [];
        for (let i = 1; i <= n; i++) {
          const answer = await http.get('/v2/models').set('Authorization', alice).set('X-Request-Id', `${prefix}-${i}`);
          statuses.push(answer.status);
        }
        return statuses;
      };
      assert.deepEqual(await calls('tA', 'tA-req', 5), [200, 200, 429, 429, 429]);
      // Another tenant's traffic of the same subject neither limits it nor shows in its refusals.
      assert.deepEqual(await calls('tB', 'tB-secret-req', 3), [200, 200, 429]);
    } finally {
      await app.close();
    }
    const reopened = await createTestApp({ DATA_DIR: dataDir });
    try {
      type Row = { tenant: string; request_id: string; output_summary: Record<string, unknown> };
      const rows = await reopened.get(DataSource).query<Row[]>(
        `SELECT tenant, request_id, output_summary FROM audit_events
            WHERE actor = 'alice' AND outcome = 'denied' ORDER BY request_id`,
      );
      assert.deepEqual(
        rows.map((r) => [r.tenant, r.request_id, r.output_summary.refusals ?? null]),
        [
          ['tA', 'tA-req-3', null],
          ['tA', 'tA-req-5', 2],
          ['tB', 'tB-secret-req-3', null],
        ],
      );
    } finally {
      await reopened.close();
    }
  });
});
