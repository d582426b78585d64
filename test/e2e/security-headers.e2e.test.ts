import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { authedHttp, createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';

const LINEAR = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] };

/** What a bank's or a hospital's scan of an API expects on every answer. */
function assertHardened(headers: Record<string, string | undefined>, what: string, page = false): void {
  assert.equal(headers['cache-control'], 'no-store', `${what}: Cache-Control`);
  assert.equal(headers['x-content-type-options'], 'nosniff', `${what}: X-Content-Type-Options`);
  assert.equal(headers['x-frame-options'], 'DENY', `${what}: X-Frame-Options`);
  assert.equal(headers['referrer-policy'], 'no-referrer', `${what}: Referrer-Policy`);
  assert.equal(headers['x-powered-by'], undefined, `${what}: X-Powered-By`);
  if (page) assert.equal(headers['content-security-policy'], undefined, `${what}: the docs page runs its scripts`);
  else assert.equal(headers['content-security-policy'], "default-src 'none'; frame-ancestors 'none'", what);
}

describe('security headers on every answer', () => {
  let app: NestFastifyApplication;
  before(async () => {
    app = await createTestApp();
    await app.listen(0, '127.0.0.1');
  });
  after(async () => {
    await app.close();
  });

  it('an inference answer, the audit trail and the model metadata are never cached nor sniffed', async () => {
    const http = authedHttp(app);
    const scored = await http.post('/v2/models/fixture-linear/infer').send(LINEAR).expect(200);
    assertHardened(scored.headers, 'inference');
    const audit = await authedHttp(app, ['auditor']).get('/v1/audit/events?limit=1').expect(200);
    assertHardened(audit.headers, 'audit events');
    assertHardened((await http.get('/v2/models/fixture-linear').expect(200)).headers, 'model metadata');
    assertHardened((await request(app.getHttpServer()).get('/health/ready').expect(200)).headers, 'readiness');
    assertHardened((await http.get('/metrics').expect(200)).headers, 'metrics');
  });

  it('refusals carry them too: no token, an unknown route, an unreadable URL, a body the parser refuses', async () => {
    const anonymous = request(app.getHttpServer());
    assertHardened((await anonymous.get('/v1/audit/events').expect(401)).headers, '401');
    assertHardened((await anonymous.get('/v1/no-such-route').expect(404)).headers, '404');
    const badUrl = await anonymous.get('/v1/manufacturing/assets/%E0%A4%A').expect(400);
    assertHardened(badUrl.headers, 'unreadable URL');
    const badJson = await authedHttp(app)
      .post('/v2/models/fixture-linear/infer')
      .set('content-type', 'application/json')
      .send('{not json')
      .expect(400);
    assertHardened(badJson.headers, 'malformed JSON');
  });

  it('the alarm stream keeps its own no-cache policy and gains the rest', async () => {
    const { port } = app.getHttpServer().address() as { port: number };
    const aborter = new AbortController();
    const res = await fetch(`http://127.0.0.1:${port}/v1/manufacturing/alarms/stream`, {
      headers: { authorization: bearer(tokenFor(['plant-operator'])) },
      signal: aborter.signal,
    });
    try {
      assert.equal(res.status, 200);
      assert.match(res.headers.get('cache-control') ?? '', /no-store/);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
      assert.equal(res.headers.get('x-frame-options'), 'DENY');
    } finally {
      aborter.abort();
    }
  });

  it('the API docs page still loads its scripts (no content policy there), and is not framed', async () => {
    const docs = await request(app.getHttpServer()).get('/docs').expect(200);
    assert.match(docs.headers['content-type'], /text\/html/);
    assertHardened(docs.headers, '/docs', true);
  });
});
