import assert from 'node:assert/strict';
import { type AddressInfo, createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { authedHttp, createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';
import { until } from '../fixtures/until';

describe('gateway plumbing', () => {
  let app: NestFastifyApplication;
  let http: ReturnType<typeof authedHttp>;
  before(async () => {
    app = await createTestApp({ BODY_LIMIT_BYTES: '4096' });
    http = authedHttp(app);
  });
  after(() => app.close());

  it('/health/live and /health/ready report the runtime', async () => {
    assert.deepEqual((await http.get('/health/live').expect(200)).body, { status: 'ok' });
    const ready = await http.get('/health/ready').expect(200);
    assert.equal(ready.body.status, 'ready');
    assert.equal(ready.body.checks.models.detail.workers, '1/1');
    assert.equal(ready.body.checks.models.detail.models['fixture-linear@2'], 'ready on cpu');
  });

  it('/health/ready tells a caller without models:read only whether each check is ready', async () => {
    const anonymous = request(app.getHttpServer());
    const callers: Array<[string, string | undefined]> = [
      ['no token', undefined],
      ['a token without models:read', bearer(tokenFor(['scada']))],
      ['a token that does not verify', 'Bearer not.a.token'],
      ['an expired token with models:read', bearer(tokenFor(['ml-admin'], { expiresIn: -3600 }))],
    ];
    for (const [who, authorization] of callers) {
      const req = anonymous.get('/health/ready');
      if (authorization) void req.set('Authorization', authorization);
      const res = await req.expect(200);
      // Each check by name, ready or not: no model names or versions, no workers, no execution provider.
      const checks = {
        database: { ready: true },
        models: { ready: true },
        audit: { ready: true },
        mqtt: { ready: true },
      };
      assert.deepEqual(res.body, { status: 'ready', checks }, who);
      assert.doesNotMatch(res.text, /fixture|cpu|workers|detail/, who);
    }
  });

  it('unknown routes answer RFC 9457 problem+json with a request id', async () => {
    const res = await http.get('/v1/nowhere').expect(404);
    assert.match(res.headers['content-type'], /^application\/problem\+json/);
    assert.equal(res.body.status, 404);
    assert.equal(res.body.code, 'NOT_FOUND');
    assert.equal(res.body.instance, '/v1/nowhere');
    assert.equal(res.body.requestId, res.headers['x-request-id']);
  });

  // Nest's `Cannot GET /v1/...` quoted the path, which can carry a patient's or a card's identifier, in the detail.
  it('an unknown path is not quoted back in the 404 detail, under /v1 or /v2', async () => {
    const id = '1.2.840.113619.2.55.3.604688119';
    const v1 = await http.get(`/v1/patients/${id}?x=1`).expect(404);
    assert.equal(v1.body.code, 'NOT_FOUND');
    assert.equal(v1.body.detail, 'No route matches GET on this path');
    const v2 = await http.post(`/v2/cards/${id}/nothing`).send({}).expect(404);
    assert.deepEqual(v2.body, { error: 'No route matches POST on this path' });
    // Nor is it written to the audit trail (an unmatched path writes no row; a row would name its request id).
    const rows: unknown[] = await app.get(DataSource).query('SELECT * FROM audit_events');
    assert.ok(!JSON.stringify(rows).includes(id));
  });

  it('keeps a safe caller X-Request-Id and replaces an unsafe one', async () => {
    const kept = await http.get('/health/live').set('X-Request-Id', 'pacs-123.a');
    assert.equal(kept.headers['x-request-id'], 'pacs-123.a');
    const replaced = await http.get('/health/live').set('X-Request-Id', 'bad id\twith spaces');
    assert.match(replaced.headers['x-request-id'], /^[0-9a-f-]{36}$/);
  });

  it('an oversized body is refused with 413, not a crash', async () => {
    const data = Array.from({ length: 2000 }, () => 1.5);
    const res = await http
      .post('/v2/models/fixture-linear/infer')
      .send({ inputs: [{ name: 'x', shape: [500, 4], datatype: 'FP32', data }] })
      .expect(413);
    assert.equal(typeof res.body.error, 'string');
  });

  it('/metrics exposes request, queue, compute, batch, depth and provider series', async () => {
    await http
      .post('/v2/models/fixture-linear/infer')
      .send({ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] })
      .expect(200);
    const text = (await http.get('/metrics').expect(200)).text;
    for (const series of [
      'gateway_inference_requests_total{model="fixture-linear",version="2",outcome="ok"} ',
      'gateway_inference_queue_seconds_bucket{le="0.001",model="fixture-linear",version="2"}',
      'gateway_inference_compute_seconds_count{model="fixture-linear",version="2"}',
      'gateway_inference_batch_size_bucket{le="1",model="fixture-linear",version="2"}',
      'gateway_inference_queue_depth{model="fixture-linear",version="2"}',
      'gateway_model_execution_provider{model="fixture-cnn",version="1",provider="cpu"} 1',
      'gateway_inference_workers_ready 1',
      'gateway_http_requests_total{method="POST",route="/v2/models/:name/infer",status="200"}',
    ]) {
      assert.ok(text.includes(series), `missing ${series}`);
    }
  });

  it('serves Swagger UI at /docs and the OpenAPI document', async () => {
    const ui = await http.get('/docs').expect(200);
    assert.match(ui.text, /swagger/i);
    const doc = await http.get('/docs/openapi.json').expect(200);
    assert.ok(doc.body.paths['/v2/models/{name}/infer']);
    assert.ok(doc.body.paths['/health/ready']);
  });

  it('the OpenAPI document requires no header and lists none that OpenAPI 3 ignores', async () => {
    const doc = await http.get('/docs/openapi.json').expect(200);
    const paths = doc.body.paths as Record<string, Record<string, { parameters?: Array<Record<string, unknown>> }>>;
    const wrong: string[] = [];
    for (const [path, item] of Object.entries(paths)) {
      for (const [method, operation] of Object.entries(item)) {
        for (const parameter of operation.parameters ?? []) {
          if (parameter.in !== 'header') continue;
          const name = String(parameter.name);
          // A header parameter named Accept, Content-Type or Authorization SHALL be ignored (OpenAPI 3.0, 4.7.12).
          if (/^(accept|content-type|authorization)$/i.test(name) || parameter.required === true) {
            wrong.push(`${method.toUpperCase()} ${path}: ${name}${parameter.required ? ' (required)' : ''}`);
          }
        }
      }
    }
    assert.deepEqual(wrong, []);
  });
});

describe('the broker link in /health/ready', () => {
  it('while the broker cannot be reached, the mqtt detail says why (to a token with models:read)', async () => {
    const closed = createServer();
    await new Promise<void>((listening) => closed.listen(0, '127.0.0.1', listening));
    const { port } = closed.address() as AddressInfo;
    await new Promise((done) => closed.close(done));
    const app = await createTestApp({ MQTT_URL: `mqtt://127.0.0.1:${port}` });
    try {
      const http = authedHttp(app);
      const detail = await until('the first failed connection', async () => {
        const mqtt = (await http.get('/health/ready').expect(200)).body.checks.mqtt as {
          ready: boolean;
          detail: { connected: boolean; lastError?: string };
        };
        return mqtt.detail.lastError ? mqtt : undefined;
      });
      assert.equal(detail.ready, true, 'informative: a broker outage stops no HTTP traffic');
      assert.equal(detail.detail.connected, false);
      assert.match(detail.detail.lastError ?? '', new RegExp(`ECONNREFUSED 127\\.0\\.0\\.1:${port}`));
    } finally {
      await app.close();
    }
  });
});
