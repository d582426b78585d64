import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { AuditDraft, AuditWriter } from '../../src/audit/audit-writer.service';
import { MAX_JSON_DEPTH } from '../../src/common/http/json-depth';
import { bundledModelsDir } from '../fixtures/paths';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';

const nested = (depth: number): string => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);

const features = Object.fromEntries(Array.from({ length: 28 }, (_, i) => [`v${i + 1}`, 0.1]));
const TX = {
  transactionId: 'tx-1',
  occurredAt: '2026-11-23T03:05:00+01:00',
  amount: 12.5,
  currency: 'EUR',
  cardToken: 'tok_7f3a9c2e',
  features,
};

/**
 * What a hostile or broken client sends besides wrong fields: bodies nested tens of thousands of
 * levels deep, NUL characters where the database is asked, URLs the router cannot read. Each gets a
 * 4xx problem (never a 500 or a dead process), and none spoils another request's audit commit.
 */
describe('hostile input: deep bodies, NUL characters, unreadable URLs', () => {
  let app: NestFastifyApplication;
  let http: ReturnType<typeof request>;
  let modelsDir: string;
  const all = bearer(tokenFor(['ml-admin', 'risk-engine', 'scada', 'plant-operator', 'auditor'], { sub: 'hostile' }));
  before(async () => {
    modelsDir = bundledModelsDir(['finance', 'manufacturing']);
    app = await createTestApp({ MODELS_DIR: modelsDir });
    await app.listen(0, '127.0.0.1');
    http = request(app.getHttpServer());
  });
  after(async () => {
    await app.close();
    rmSync(modelsDir, { recursive: true, force: true });
  });
  const alive = async (): Promise<void> => void (await http.get('/health/live').expect(200));

  it(`a JSON body nested deeper than ${MAX_JSON_DEPTH} levels is refused with 400 naming the body, on every JSON route`, async () => {
    const routes: Array<['post' | 'put', string]> = [
      ['post', '/v1/finance/fraud-scores'],
      ['post', '/v1/finance/fraud-scores/batch'],
      ['post', '/v1/finance/credit-assessments'],
      ['post', '/v1/manufacturing/assets/pump-1/readings'],
      ['put', '/v1/manufacturing/assets/pump-1'],
    ];
    for (const [method, path] of routes) {
      for (const body of [nested(20_000), '['.repeat(100_000) + ']'.repeat(100_000)]) {
        const res = await http[method](path)
          .set('Authorization', all)
          .set('content-type', 'application/json')
          .send(body);
        assert.equal(res.status, 400, `${method} ${path}: ${res.status} ${res.text.slice(0, 200)}`);
        assert.match(String(res.headers['content-type']), /application\/problem\+json/);
        assert.deepEqual(
          res.body.errors.map((e: { field: string }) => e.field),
          ['(body)'],
        );
      }
    }
    // The Open Inference Protocol answers in its own error format.
    const oip = await http
      .post('/v2/models/card-fraud/infer')
      .set('Authorization', all)
      .set('content-type', 'application/json')
      .send(nested(20_000))
      .expect(400);
    assert.match(oip.body.error, /nests arrays and objects more than 64 levels deep/);
    await alive();
  });

  it('a batch item nested deep inside a valid batch is refused, and the gateway lives on', async () => {
    // Before the depth limit this reached the card-number scan and the digest's canonical form,
    // whose recursion overflowed: on the batch route, an unhandled rejection that ended the process.
    const body = `{"transactions":[${JSON.stringify(TX).replace(/}$/, `,"extra":${nested(20_000)}}`)}]}`;
    await http
      .post('/v1/finance/fraud-scores/batch')
      .set('Authorization', all)
      .set('content-type', 'application/json')
      .send(body)
      .expect(400);
    await alive();
    // Up to the limit, a body is read as usual (here: refused for its unknown field, item by item).
    const deepest = `{"transactions":[${JSON.stringify(TX).replace(/}$/, `,"extra":${nested(MAX_JSON_DEPTH - 3)}}`)}]}`;
    const res = await http
      .post('/v1/finance/fraud-scores/batch')
      .set('Authorization', all)
      .set('content-type', 'application/json')
      .send(deepest)
      .expect(200);
    assert.equal(res.body.failed, 1);
    assert.ok(res.body.items[0].error.errors.some((e: { field: string }) => e.field === 'extra'));
  });

  it('NUL characters bound for the database get 4xx naming the field, never 500', async () => {
    const events = await http.get('/v1/audit/events?actor=a%00b').set('Authorization', all).expect(400);
    assert.deepEqual(
      events.body.errors.map((e: { field: string }) => e.field),
      ['actor'],
    );
    const alarms = await http.get('/v1/manufacturing/alarms?assetId=%00').set('Authorization', all).expect(400);
    assert.equal(alarms.body.errors[0].field, 'assetId');
    await http.get('/v1/manufacturing/alarms?assetId=a&assetId=b').set('Authorization', all).expect(400);
    await http.delete('/v1/manufacturing/assets/%00').set('Authorization', all).expect(404);
  });

  it('a row whose strings PostgreSQL would refuse commits, with the other rows of its group', async () => {
    // Rows carry what callers sent (a DIMSE peer's AE title, a token's subject, a reason quoting a
    // file); PostgreSQL refuses NUL in text and jsonb, and one refused row would fail the commit of
    // every row waiting with it, each of those requests answered 503.
    const writer = app.get(AuditWriter);
    const draft = (requestId: string, actor: string, output: Record<string, unknown>): AuditDraft => ({
      occurredAt: new Date(),
      actor,
      roles: ['ml-admin'],
      tenant: null,
      action: 'test.hostile',
      modelName: null,
      modelVersion: null,
      requestId,
      clientAddress: '127.0.0.1',
      inputDigest: null,
      outputSummary: output,
      outcome: 'ok',
      statusCode: 200,
      latencyMs: 1,
    });
    await Promise.all([
      writer.record(draft('hostile-nul', 'dimse:AE\u0000X', { calledAeTitle: 'GW\u0000', ['k\u0000']: ['\ud800'] })),
      writer.record(draft('hostile-plain', 'dimse:PLAIN', { calledAeTitle: 'GW' })),
      http.post('/v1/finance/fraud-scores').set('Authorization', all).send(TX).expect(200),
    ]);
    const rows: Array<{ request_id: string; actor: string; output_summary: unknown }> = await app
      .get(DataSource)
      .query(
        "SELECT request_id, actor, output_summary FROM audit_events WHERE action = 'test.hostile' ORDER BY request_id",
      );
    assert.deepEqual(
      rows.map((r) => [r.request_id, r.actor, r.output_summary]),
      [
        ['hostile-nul', 'dimse:AE\uFFFDX', { calledAeTitle: 'GW\uFFFD', ['k\uFFFD']: ['\uFFFD'] }],
        ['hostile-plain', 'dimse:PLAIN', { calledAeTitle: 'GW' }],
      ],
    );
    const verify = await http.get('/v1/audit/verify').set('Authorization', all).expect(200);
    assert.equal(verify.body.valid, true, JSON.stringify(verify.body));
  });

  it('a URL the router cannot read is answered as problem+json', async () => {
    const bad = await http.get('/v1/manufacturing/assets/%E0%A4%A').set('Authorization', all).expect(400);
    assert.match(String(bad.headers['content-type']), /application\/problem\+json/);
    assert.equal(bad.body.code, 'FST_ERR_BAD_URL');
    const long = await http
      .get(`/v1/manufacturing/assets/${'a'.repeat(3000)}`)
      .set('Authorization', all)
      .expect(414);
    assert.match(String(long.headers['content-type']), /application\/problem\+json/);
    // The longest asset id the registry accepts (128 characters) is routed; one more is not.
    await http
      .get(`/v1/manufacturing/assets/${'a'.repeat(128)}`)
      .set('Authorization', all)
      .expect(404);
    await http
      .get(`/v1/manufacturing/assets/${'a'.repeat(129)}`)
      .set('Authorization', all)
      .expect(414);
    assert.ok(bad.headers['x-request-id'] && long.headers['x-request-id']);
  });
});
