import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import request from 'supertest';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';
import { freshDataDir } from '../fixtures/test-data-dir';
import { until } from '../fixtures/until';

interface Event {
  actor: string | null;
  tenant: string | null;
  action: string;
  outcome: string;
  statusCode: number;
  clientAddress: string;
  requestId: string;
  outputSummary: { reason?: string; refusals?: number; firstAt?: string; lastAt?: string } | null;
}

const DENIED = '/v1/audit/events?outcome=denied&limit=500';
const auditor = bearer(tokenFor(['auditor'], { sub: 'auditor-1' }));

describe('requests without a valid token, limited per address', () => {
  it('answers 429 past the budget, audits those as one summary row, and never limits a valid token', async () => {
    // A window longer than the test: which requests fall in it does not depend on the machine's pace.
    const dataDir = await freshDataDir();
    const app = await createTestApp({ DATA_DIR: dataDir, AUTH_REFUSAL_LIMIT: '3', AUTH_REFUSAL_WINDOW_MS: '600000' });
    let limited: request.Response;
    try {
      const http = request(app.getHttpServer());
      const answers = [];
      for (let i = 0; i < 3; i++)
        answers.push(await http.get('/v1/audit/verify').set('Authorization', 'Bearer forged'));
      for (let i = 0; i < 7; i++) answers.push(await http.get('/v1/audit/verify'));
      assert.deepEqual(
        answers.map((a) => a.status),
        [401, 401, 401, 429, 429, 429, 429, 429, 429, 429],
      );
      limited = answers[9];
      assert.match(limited.headers['content-type'], /^application\/problem\+json/);
      assert.ok(Number(limited.headers['retry-after']) >= 1, `Retry-After: ${limited.headers['retry-after']}`);
      assert.match(
        limited.body.detail,
        /^missing bearer token; more than 3 requests without a valid token from this address in 600 s$/,
      );
      assert.deepEqual(limited.body.errors, [{ field: 'Authorization', reason: 'missing bearer token' }]);
      // A caller with a valid token at the same address is answered as usual.
      await http.get('/v2/models').set('Authorization', auditor).expect(200);
    } finally {
      await app.close();
    }
    // Three rows of their own for the first three, one summary for the seven past the budget (written at shutdown).
    const reopened = await createTestApp({ DATA_DIR: dataDir });
    try {
      const http = request(reopened.getHttpServer());
      const { body } = await http.get(DENIED).set('Authorization', auditor).expect(200);
      const events = body.events as Event[];
      assert.equal(events.filter((e) => e.statusCode === 401).length, 3);
      const summaries = events.filter((e) => e.statusCode === 429);
      assert.equal(summaries.length, 1);
      const [summary] = summaries;
      assert.equal(summary.outcome, 'denied');
      assert.equal(summary.actor, null);
      assert.equal(summary.action, 'audit.verify');
      assert.equal(summary.clientAddress, '127.0.0.1');
      assert.equal(summary.requestId, limited.headers['x-request-id']);
      assert.equal(summary.outputSummary?.refusals, 7);
      assert.match(summary.outputSummary?.reason ?? '', /^missing bearer token; more than 3/);
      assert.ok(Date.parse(summary.outputSummary?.firstAt ?? '') <= Date.parse(summary.outputSummary?.lastAt ?? ''));
      // The summary is chained like any row.
      const verify = await http.get('/v1/audit/verify').set('Authorization', auditor).expect(200);
      assert.equal(verify.body.valid, true);
    } finally {
      await reopened.close();
    }
  });

  it('writes the summary when the window ends, and the next window gives the address its budget back', async () => {
    const app = await createTestApp({ AUTH_REFUSAL_LIMIT: '1', AUTH_REFUSAL_WINDOW_MS: '1000' });
    try {
      const http = request(app.getHttpServer());
      // Until one is past the budget: a slow machine may see a window end on the way.
      await until('a request past the budget', async () =>
        (await http.get('/v1/audit/verify')).status === 429 ? true : undefined,
      );
      const summary = await until('the summary row', async () => {
        const { body } = await http.get(DENIED).set('Authorization', auditor).expect(200);
        return (body.events as Event[]).find((e) => e.outputSummary?.refusals !== undefined);
      });
      assert.equal(summary.statusCode, 429);
      assert.ok((summary.outputSummary?.refusals ?? 0) >= 1);
      await until('a new window', async () => ((await http.get('/v1/audit/verify')).status === 401 ? true : undefined));
    } finally {
      await app.close();
    }
  });

  it('writes what is still counted at shutdown before the trail closes', async () => {
    const dataDir = await freshDataDir();
    const app = await createTestApp({ DATA_DIR: dataDir, AUTH_REFUSAL_LIMIT: '1', AUTH_REFUSAL_WINDOW_MS: '600000' });
    const statuses = [];
    try {
      const http = request(app.getHttpServer());
      for (let i = 0; i < 5; i++) statuses.push((await http.post('/v1/finance/fraud-scores').send({})).status);
    } finally {
      await app.close();
    }
    assert.deepEqual(statuses, [401, 429, 429, 429, 429]);
    const reopened = await createTestApp({ DATA_DIR: dataDir });
    try {
      const http = request(reopened.getHttpServer());
      const { body } = await http.get(DENIED).set('Authorization', auditor).expect(200);
      const summaries = (body.events as Event[]).filter((e) => e.statusCode === 429);
      assert.equal(summaries.length, 1);
      assert.equal(summaries[0].action, 'fraud.score');
      assert.equal(summaries[0].outputSummary?.refusals, 4);
      const verify = await http.get('/v1/audit/verify').set('Authorization', auditor).expect(200);
      assert.equal(verify.body.valid, true);
    } finally {
      await reopened.close();
    }
  });

  it("audits a subject's 403s past its budget in one summary row, and still answers each 403", async () => {
    const dataDir = await freshDataDir();
    const app = await createTestApp({ DATA_DIR: dataDir, AUTH_REFUSAL_LIMIT: '2', AUTH_REFUSAL_WINDOW_MS: '600000' });
    const radiologist = bearer(tokenFor(['radiologist'], { sub: 'dr-who' }));
    const statuses = [];
    try {
      const http = request(app.getHttpServer());
      for (let i = 0; i < 5; i++) {
        statuses.push((await http.get('/v1/audit/events').set('Authorization', radiologist)).status);
      }
    } finally {
      await app.close();
    }
    assert.deepEqual(statuses, [403, 403, 403, 403, 403]);
    const reopened = await createTestApp({ DATA_DIR: dataDir });
    try {
      const http = request(reopened.getHttpServer());
      const { body } = await http.get(`${DENIED}&actor=dr-who`).set('Authorization', auditor).expect(200);
      const events = body.events as Event[];
      assert.deepEqual(events.map((e) => [e.statusCode, e.outputSummary?.refusals ?? null]).reverse(), [
        [403, null],
        [403, null],
        [403, 3],
      ]);
      assert.equal(events[0].action, 'audit.events');
      assert.equal(events[0].outputSummary?.reason, 'requires permission audit:read');
    } finally {
      await reopened.close();
    }
  });

  it("keeps one subject's refusals in two tenants apart: a budget and summary rows per tenant", async () => {
    // Auth0 Organizations gives one user the same sub in each organisation it belongs to.
    const dataDir = await freshDataDir();
    const app = await createTestApp({ DATA_DIR: dataDir, AUTH_REFUSAL_LIMIT: '2', AUTH_REFUSAL_WINDOW_MS: '600000' });
    const inA = bearer(tokenFor(['radiologist'], { sub: 'shared-user', tenant: 'tA' }));
    const inB = bearer(tokenFor(['radiologist'], { sub: 'shared-user', tenant: 'tB' }));
    const statuses = [];
    try {
      const http = request(app.getHttpServer());
      for (let i = 1; i <= 5; i++) {
        const answer = await http.get('/v1/audit/events').set('Authorization', inA).set('X-Request-Id', `tA-req-${i}`);
        statuses.push(answer.status);
      }
      for (let i = 1; i <= 3; i++) {
        const answer = await http
          .get('/v1/audit/events')
          .set('Authorization', inB)
          .set('X-Request-Id', `tB-secret-req-${i}`);
        statuses.push(answer.status);
      }
    } finally {
      await app.close();
    }
    assert.deepEqual(statuses, [403, 403, 403, 403, 403, 403, 403, 403]);
    const reopened = await createTestApp({ DATA_DIR: dataDir });
    try {
      const http = request(reopened.getHttpServer());
      const seenBy = async (tenant: string) => {
        const tenantAuditor = bearer(tokenFor(['auditor'], { sub: `auditor-${tenant}`, tenant }));
        const { body } = await http.get(`${DENIED}&actor=shared-user`).set('Authorization', tenantAuditor).expect(200);
        return (body.events as Event[])
          .map((e) => [e.tenant, e.requestId, e.outputSummary?.refusals ?? null])
          .reverse();
      };
      // Each tenant's first two one by one, the rest in a summary of its own: no request id or count of the other's.
      assert.deepEqual(await seenBy('tA'), [
        ['tA', 'tA-req-1', null],
        ['tA', 'tA-req-2', null],
        ['tA', 'tA-req-5', 3],
      ]);
      assert.deepEqual(await seenBy('tB'), [
        ['tB', 'tB-secret-req-1', null],
        ['tB', 'tB-secret-req-2', null],
        ['tB', 'tB-secret-req-3', 1],
      ]);
    } finally {
      await reopened.close();
    }
  });
});
