import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';
import { freshDataDir } from '../fixtures/test-data-dir';

const LINEAR = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] };
const prometheus = bearer(tokenFor(['monitoring'], { sub: 'prometheus-1' }));
const auditor = bearer(tokenFor(['auditor'], { sub: 'auditor-1' }));

interface Event {
  actor: string | null;
  action: string;
  outcome: string;
  statusCode: number;
  outputSummary: Record<string, unknown> | null;
}

describe('/metrics needs metrics:read', () => {
  it('refuses a caller without a token (401) or without the permission (403), and answers a scraper', async () => {
    const app = await createTestApp();
    try {
      const http = request(app.getHttpServer());
      const anonymous = await http.get('/metrics');
      assert.equal(anonymous.status, 401);
      assert.match(anonymous.headers['content-type'], /^application\/problem\+json/);
      assert.match(anonymous.headers['www-authenticate'], /^Bearer /);
      assert.ok(!anonymous.text.includes('gateway_inference'), 'nothing of the metrics leaks in the refusal');
      const scada = await http.get('/metrics').set('Authorization', bearer(tokenFor(['scada'])));
      assert.equal(scada.status, 403);
      assert.deepEqual(scada.body.errors, [{ field: 'Authorization', reason: 'requires permission metrics:read' }]);
      const scraped = await http.get('/metrics').set('Authorization', prometheus).expect(200);
      assert.match(scraped.headers['content-type'], /^text\/plain; version=0\.0\.4/);
      assert.match(scraped.text, /^gateway_inference_workers_ready 1$/m);
      // ml-admin watches its models run; a query parameter is refused, as on every route that takes none.
      await http
        .get('/metrics')
        .set('Authorization', bearer(tokenFor(['ml-admin'])))
        .expect(200);
      const filtered = await http.get('/metrics?name=gateway_inference').set('Authorization', prometheus);
      assert.equal(filtered.status, 400);
      assert.match(filtered.text, /name/);
    } finally {
      await app.close();
    }
  });

  it('audits scrapes as one summary row per scraper and window, and answers them while the trail cannot be written', async () => {
    const dataDir = await freshDataDir();
    // A window longer than the test: the summary is written at shutdown.
    let app: NestFastifyApplication = await createTestApp({ DATA_DIR: dataDir, AUTH_REFUSAL_WINDOW_MS: '600000' });
    try {
      const http = request(app.getHttpServer());
      for (let i = 0; i < 3; i++) await http.get('/metrics').set('Authorization', prometheus).expect(200);
      const db = app.get(DataSource);
      await db.query('ALTER TABLE audit_events RENAME TO audit_events_away');
      try {
        const admin = bearer(tokenFor(['ml-admin']));
        const refused = await http.post('/v2/models/fixture-linear/infer').set('Authorization', admin).send(LINEAR);
        assert.equal(refused.status, 503, 'a decision still waits for its row');
        // The scrape does not: the audit trail's failure series are readable while it is down.
        const scraped = await http.get('/metrics').set('Authorization', prometheus).expect(200);
        assert.match(scraped.text, /^gateway_audit_commit_failures_total [1-9]/m);
      } finally {
        await db.query('ALTER TABLE audit_events_away RENAME TO audit_events');
      }
    } finally {
      await app.close();
    }
    app = await createTestApp({ DATA_DIR: dataDir });
    try {
      const http = request(app.getHttpServer());
      const { body } = await http.get('/v1/audit/events?action=metrics.read').set('Authorization', auditor).expect(200);
      const rows = body.events as Event[];
      assert.equal(rows.length, 1, JSON.stringify(rows));
      const [row] = rows;
      assert.equal(row.actor, 'prometheus-1');
      assert.equal(row.outcome, 'ok');
      assert.equal(row.statusCode, 200);
      assert.equal(row.outputSummary?.requests, 4);
      assert.equal(row.outputSummary?.refusals, undefined);
      assert.equal(row.outputSummary?.reason, undefined);
      assert.ok(String(row.outputSummary?.firstAt) <= String(row.outputSummary?.lastAt));
    } finally {
      await app.close();
    }
  });
});
