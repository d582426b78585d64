import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { methodsAt, routeCatalog } from '../../src/common/http/route-catalog';
import { createTestApp } from '../fixtures/test-app';

/**
 * A path the gateway serves, asked with a method it does not answer there: 405 with Allow (RFC 9110), naming
 * the methods, where it was a 404 saying nothing was there. A path nothing serves stays 404.
 */
describe('a method a path does not answer', () => {
  let app: NestFastifyApplication;
  before(async () => {
    app = await createTestApp();
  });
  after(() => app.close());
  const http = () => request(app.getHttpServer());

  it('is refused with 405, Allow and the methods named, as problem+json', async () => {
    const cases: Array<[request.Test, string]> = [
      [http().post('/health/ready'), 'GET, HEAD'],
      [http().delete('/v1/audit/events'), 'GET, HEAD'],
      [http().put('/v1/finance/fraud-scores/batch'), 'POST'],
      [http().get('/dicomweb/studies/1.2.840.99'), 'POST'],
      [http().patch('/v1/medical/studies/1.2.840.99/findings'), 'GET, HEAD'],
    ];
    for (const [req, allow] of cases) {
      const res = await req;
      assert.equal(res.status, 405, `${req.method} ${req.url}: ${res.text}`);
      assert.equal(res.headers.allow, allow);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
      assert.equal(res.body.code, 'METHOD_NOT_ALLOWED');
      assert.equal(res.body.detail, `${req.method} is not allowed here; this path answers ${allow}`);
      assert.deepEqual(res.body.errors, [{ field: '(method)', reason: `must be one of ${allow} on this path` }]);
      // Nothing of the path is quoted back but its instance member.
      assert.ok(!res.body.detail.includes('1.2.840'), res.body.detail);
    }
  });

  it('answers the Open Inference Protocol shape under /v2', async () => {
    const res = await http().put('/v2/models/fixture-linear/infer');
    assert.equal(res.status, 405, res.text);
    assert.equal(res.headers.allow, 'POST');
    assert.deepEqual(res.body, { error: '(method): PUT is not allowed here; this path answers POST' });
  });

  it('leaves a path nothing serves at 404', async () => {
    for (const res of [await http().post('/v1/nothing-here'), await http().get('/v1/finance/fraud-scores/batch/x')]) {
      assert.equal(res.status, 404, res.text);
      assert.equal(res.headers.allow, undefined);
      assert.equal(res.body.code, 'NOT_FOUND');
    }
  });

  it('leaves a path a route answers by the same method, finding nothing there, at 404', async () => {
    // /docs/* is served by HEAD and GET: a missing file is a 404, never a 405 allowing the method asked.
    for (const res of [await http().get('/docs/no-such-file.js'), await http().head('/docs/no-such-file.js')]) {
      assert.equal(res.status, 404, res.text);
      assert.equal(res.headers.allow, undefined);
    }
    const get = await http().get('/docs/no-such-file.js');
    assert.equal(get.body.code, 'NOT_FOUND');
    assert.match(String(get.headers['content-type']), /^application\/problem\+json/);
    const post = await http().post('/docs/no-such-file.js');
    assert.equal(post.status, 405, post.text);
    assert.equal(post.headers.allow, 'HEAD, GET');
  });

  it('finds every registered route at a path of its own by its own method', () => {
    const fastify = app.getHttpAdapter().getInstance();
    for (const route of routeCatalog(fastify)) {
      const path = route.url.replace(/:(\w+)/g, 'x').replace('*', 'y');
      assert.ok(methodsAt(fastify, path).includes(route.method), `${route.method} ${route.url}`);
    }
  });
});
