import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { ROLES } from '../../src/auth/roles';
import { routeCatalog } from '../../src/common/http/route-catalog';
import { buildOpenApiDocument } from '../../src/openapi/openapi';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';

/** Routes anyone may call: probes and the API documentation. */
const PUBLIC = new Set(['GET /health/live', 'GET /health/ready', 'GET /v2/health/live', 'GET /v2/health/ready']);
/** Swagger UI, its assets, /docs/openapi.json and /docs-yaml. */
const isDocs = (url: string): boolean => url.startsWith('/docs');

const PARAMS: Record<string, string> = { name: 'fixture-linear', version: '1' };
const BODIES: Record<string, object> = {
  'POST /v2/models/:name/infer': { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] },
  'POST /v2/models/:name/versions/:version/infer': {
    inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }],
  },
};

describe('access matrix: every registered route', () => {
  let app: NestFastifyApplication;
  let routes: Array<{ method: string; url: string; key: string }>;
  before(async () => {
    app = await createTestApp();
    routes = routeCatalog(app.getHttpAdapter().getInstance())
      .filter((r) => r.method !== 'HEAD' && r.method !== 'OPTIONS' && !isDocs(r.url))
      .map((r) => ({ ...r, key: `${r.method} ${r.url}` }));
  });
  after(() => app.close());

  const call = (route: { method: string; url: string; key: string }, token?: string) => {
    const path = route.url.replace(/:(\w+)/g, (_, p: string) => PARAMS[p] ?? 'x');
    const http = request(app.getHttpServer());
    let req =
      route.method === 'POST'
        ? http.post(path).send(BODIES[route.key] ?? {})
        : route.method === 'PUT'
          ? http.put(path).send(BODIES[route.key] ?? {})
          : route.method === 'DELETE'
            ? http.delete(path)
            : http.get(path);
    if (token) req = req.set('Authorization', bearer(token));
    // A Server-Sent Events stream never ends: its status is all this test needs.
    if (route.url.endsWith('/stream')) {
      req = req.buffer(false).parse((res, done) => {
        (res as unknown as { destroy(): void }).destroy();
        done(null, undefined);
      });
    }
    return req;
  };

  it('finds the routes of every controller in the router', () => {
    const keys = new Set(routes.map((r) => r.key));
    for (const expected of [
      'GET /health/ready',
      'GET /v2/models/:name',
      'POST /v2/models/:name/infer',
      'GET /v1/audit/events',
      'GET /v1/audit/verify',
    ]) {
      assert.ok(keys.has(expected), `${expected} is not in the router's routes: ${[...keys].join(', ')}`);
    }
    for (const only of ['POST', 'GET', 'PUT', 'DELETE']) assert.ok(routes.some((r) => r.method === only));
  });

  it('public routes answer without a token', async () => {
    for (const route of routes.filter((r) => PUBLIC.has(r.key))) {
      const res = await call(route);
      assert.ok(res.status !== 401 && res.status !== 403, `${route.key} answered ${res.status}`);
    }
  });

  it('every other route: no token -> 401, a token without the permission -> 403, with it -> neither', async () => {
    const everyRole = tokenFor(ROLES, { sub: 'all-roles' });
    const noRole = tokenFor([], { sub: 'no-roles' });
    for (const route of routes.filter((r) => !PUBLIC.has(r.key))) {
      const anonymous = await call(route);
      assert.equal(anonymous.status, 401, `${route.key} without a token answered ${anonymous.status}`);
      const forbidden = await call(route, noRole);
      assert.equal(forbidden.status, 403, `${route.key} with no roles answered ${forbidden.status}`);
      const allowed = await call(route, everyRole);
      assert.ok(
        allowed.status !== 401 && allowed.status !== 403,
        `${route.key} with every role answered ${allowed.status}: does it declare its permission?`,
      );
    }
  });

  it('the OpenAPI document asks for a bearer token on exactly the routes that need one', () => {
    const document = buildOpenApiDocument(app);
    const documented: string[] = [];
    for (const [path, item] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(item as Record<string, { security?: unknown[] }>)) {
        const key = `${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`;
        documented.push(key);
        const security = (operation.security ?? []) as object[];
        // An empty requirement beside the bearer one is OpenAPI's optional authentication: a public route that
        // shows more to a caller it knows (/health/ready).
        const bearerAuth =
          security.some((s) => Object.hasOwn(s, 'bearer')) && !security.some((s) => Object.keys(s).length === 0);
        assert.equal(bearerAuth, !PUBLIC.has(key), `${key}: security ${JSON.stringify(operation.security)}`);
      }
    }
    // The document is checked against the router, not against an empty list.
    assert.ok(documented.includes('GET /v2/health/live') && documented.includes('GET /v2/models/:name'));
  });

  it('the OpenAPI document names the permission each route asks for in its 403, and no other', async () => {
    const document = buildOpenApiDocument(app) as unknown as {
      paths: Record<
        string,
        Record<string, { 'x-required-permission'?: string; responses: Record<string, { description: string }> }>
      >;
    };
    const operationOf = (route: { method: string; url: string }) =>
      document.paths[route.url.replace(/:(\w+)/g, '{$1}')]?.[route.method.toLowerCase()];
    const noRole = tokenFor([], { sub: 'no-roles-named' });
    let named = 0;
    for (const route of routes) {
      const operation = operationOf(route);
      if (PUBLIC.has(route.key)) {
        assert.equal(operation?.['x-required-permission'], undefined, `${route.key} is public`);
        continue;
      }
      assert.ok(operation, `${route.key} is not in the document`);
      // The permission the guard asks for, as its Bearer challenge names it (RFC 6750 3: scope).
      const refused = await call(route, noRole);
      assert.equal(refused.status, 403, route.key);
      const scope = /scope="([^"]+)"/.exec(String(refused.headers['www-authenticate']))?.[1];
      assert.ok(scope, `${route.key}: ${refused.headers['www-authenticate']}`);
      assert.equal(operation['x-required-permission'], scope, `${route.key}: x-required-permission`);
      const forbidden = operation.responses['403']?.description ?? '';
      assert.ok(forbidden.includes(`\`${scope}\``), `${route.key}: the 403 says "${forbidden}"`);
      named++;
    }
    assert.ok(named > 20, `only ${named} routes checked`);
    // A 403 the handler gives for a reason of its own is described too.
    const tenant = await request(app.getHttpServer())
      .get('/v1/audit/verify')
      .set('Authorization', bearer(tokenFor(['auditor'], { tenant: 'bank-a' })));
    assert.equal(tenant.status, 403);
    assert.match(document.paths['/v1/audit/verify'].get.responses['403'].description, /names a tenant/);
  });

  it('OIP: metadata needs models:read, inference needs models:admin', async () => {
    const byKey = (key: string) => routes.find((r) => r.key === key)!;
    const auditor = tokenFor(['auditor']); // models:read, not models:admin
    const mlAdmin = tokenFor(['ml-admin']);
    assert.equal((await call(byKey('GET /v2/models/:name'), auditor)).status, 200);
    assert.equal((await call(byKey('POST /v2/models/:name/infer'), auditor)).status, 403);
    assert.equal((await call(byKey('POST /v2/models/:name/infer'), mlAdmin)).status, 200);
    assert.equal((await call(byKey('GET /v1/audit/events'), mlAdmin)).status, 403);
    assert.equal((await call(byKey('GET /v1/audit/events'), auditor)).status, 200);
  });

  it('a refused token answers 401 problem+json with a reason and a Bearer challenge', async () => {
    const expired = tokenFor(['auditor'], { expiresIn: -120 });
    const res = await request(app.getHttpServer())
      .get('/v1/audit/events')
      .set('Authorization', bearer(expired))
      .expect(401);
    assert.match(res.headers['content-type'], /^application\/problem\+json/);
    assert.match(res.headers['www-authenticate'], /^Bearer /);
    assert.equal(res.body.code, 'UNAUTHENTICATED');
    assert.equal(res.body.detail, 'token expired');
    const garbage = await request(app.getHttpServer())
      .get('/v1/audit/events')
      .set('Authorization', 'Bearer abc.def.ghi');
    assert.equal(garbage.status, 401);
    assert.equal(garbage.body.detail, 'malformed token');
  });

  it('a refusal of the token names Authorization as its field: 401 and 403, in /v1 problems and in /v2 errors', async () => {
    const http = request(app.getHttpServer());
    const expired = await http
      .get('/v1/audit/events')
      .set('Authorization', bearer(tokenFor(['auditor'], { expiresIn: -120 })));
    assert.deepEqual(expired.body.errors, [{ field: 'Authorization', reason: 'token expired' }]);
    const missing = await http.get('/v1/audit/events');
    assert.deepEqual(missing.body.errors, [{ field: 'Authorization', reason: 'missing bearer token' }]);
    const short = await http.get('/v1/audit/events').set('Authorization', bearer(tokenFor(['ml-admin'])));
    assert.equal(short.status, 403);
    assert.deepEqual(short.body.errors, [{ field: 'Authorization', reason: 'requires permission audit:read' }]);
    const oip = await http.get('/v2/models/fixture-linear');
    assert.equal(oip.status, 401);
    assert.deepEqual(oip.body, { error: 'Authorization: missing bearer token' });
    const oipShort = await http
      .post('/v2/models/fixture-linear/infer')
      .set('Authorization', bearer(tokenFor(['auditor'])))
      .send({ inputs: [] });
    assert.equal(oipShort.status, 403);
    assert.deepEqual(oipShort.body, { error: 'Authorization: requires permission models:admin' });
  });
  it('WWW-Authenticate follows RFC 6750 3.1: no error without a token, invalid_token, invalid_request, insufficient_scope', async () => {
    const http = request(app.getHttpServer());
    const realm = 'Bearer realm="inference-gateway"';
    for (const path of ['/v1/audit/events', '/v2/models/fixture-linear']) {
      // No credentials, or another scheme: the realm alone.
      const none = await http.get(path).expect(401);
      assert.equal(none.headers['www-authenticate'], realm);
      const basic = await http.get(path).set('Authorization', 'Basic dXNlcjpwYXNz').expect(401);
      assert.equal(basic.headers['www-authenticate'], realm);
      const expired = await http
        .get(path)
        .set('Authorization', bearer(tokenFor(['auditor'], { expiresIn: -120 })))
        .expect(401);
      assert.equal(
        expired.headers['www-authenticate'],
        `${realm}, error="invalid_token", error_description="token expired"`,
      );
      // Not a token68: its own reason, still 401.
      const malformed = await http.get(path).set('Authorization', 'Bearer abc$def').expect(401);
      assert.equal(
        malformed.headers['www-authenticate'],
        `${realm}, error="invalid_request", error_description="malformed bearer token"`,
      );
      const reason = path.startsWith('/v2') ? malformed.body.error : malformed.body.detail;
      assert.match(reason, /malformed bearer token$/);
      const short = await http
        .get(path)
        .set('Authorization', bearer(tokenFor(['risk-engine'])))
        .expect(403);
      const permission = path.startsWith('/v2') ? 'models:read' : 'audit:read';
      assert.equal(
        short.headers['www-authenticate'],
        `${realm}, error="insufficient_scope", error_description="requires permission ${permission}", scope="${permission}"`,
      );
    }
    // A handler's 403 (the chains span every tenant) is for want of what the token grants too.
    const tenant = await http
      .get('/v1/audit/verify')
      .set('Authorization', bearer(tokenFor(['auditor'], { tenant: 'bank-a' })))
      .expect(403);
    assert.match(tenant.headers['www-authenticate'], /^Bearer realm="inference-gateway", error="insufficient_scope", /);
  });
  it('refuses a request with two Authorization headers (Node reads the first, a proxy may read the last), and audits it', async () => {
    const http = request(app.getHttpServer());
    const auditor = bearer(tokenFor(['auditor'], { sub: 'auditor-twice' }));
    const other = bearer(tokenFor(['ml-admin'], { sub: 'admin-twice' }));
    for (const path of ['/v1/audit/events', '/v2/models/fixture-linear']) {
      // superagent writes one header line per value of an array.
      const twice = await http.get(path).set('Authorization', [auditor, other] as unknown as string);
      assert.equal(twice.status, 401);
      assert.equal(
        twice.headers['www-authenticate'],
        'Bearer realm="inference-gateway", error="invalid_request", error_description="more than one Authorization header"',
      );
      const reason = path.startsWith('/v2') ? twice.body.error : twice.body.detail;
      assert.match(reason, /more than one Authorization header$/);
    }
    const page = await http
      .get('/v1/audit/events?action=audit.events&outcome=denied&limit=1')
      .set('Authorization', auditor);
    const [row] = page.body.events as Array<{ actor: string | null; statusCode: number; outputSummary: unknown }>;
    assert.deepEqual(
      [row.actor, row.statusCode, row.outputSummary],
      [null, 401, { reason: 'more than one Authorization header' }],
    );
  });
});
