import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { routeCatalog } from '../../src/common/http/route-catalog';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';

const VIEWER = 'https://viewer.hospital.example';
const CONSOLE = 'https://console.bank.example';
const LINEAR = { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] };

/** The headers a browser's preflight sends for a JSON POST with a bearer token (Chrome's order, lower case). */
const PREFLIGHT = {
  'Access-Control-Request-Method': 'POST',
  'Access-Control-Request-Headers': 'authorization,content-type,idempotency-key',
};

const listOf = (header: string | undefined): string[] =>
  String(header ?? '')
    .split(',')
    .map((name) => name.trim().toLowerCase())
    .filter(Boolean);

/** What a browser needs to let a listed origin's app read an answer, whatever its status. */
function assertReadableBy(headers: Record<string, string | undefined>, origin: string, what: string): void {
  assert.equal(headers['access-control-allow-origin'], origin, `${what}: Access-Control-Allow-Origin`);
  assert.ok(listOf(headers.vary).includes('origin'), `${what}: Vary ${headers.vary}`);
  assert.equal(headers['access-control-allow-credentials'], undefined, `${what}: no credentials`);
  const exposed = listOf(headers['access-control-expose-headers']);
  for (const name of ['x-request-id', 'retry-after', 'www-authenticate', 'idempotent-replayed']) {
    assert.ok(exposed.includes(name), `${what}: ${name} not exposed (${exposed.join(', ')})`);
  }
}

function assertNoCors(headers: Record<string, string | undefined>, what: string): void {
  const cors = Object.keys(headers).filter((name) => name.startsWith('access-control-'));
  assert.deepEqual(cors, [], `${what}: ${cors.join(', ')}`);
}

describe('CORS: off unless CORS_ORIGINS is set', () => {
  let app: NestFastifyApplication;
  before(async () => {
    app = await createTestApp();
  });
  after(() => app.close());

  it('no CORS header on any answer, and a preflight is an OPTIONS like any other (405 naming the methods)', async () => {
    const http = request(app.getHttpServer());
    const preflight = await http.options('/v2/models/fixture-linear/infer').set('Origin', VIEWER).set(PREFLIGHT);
    assert.equal(preflight.status, 405, preflight.text);
    assert.equal(preflight.headers.allow, 'POST');
    assertNoCors(preflight.headers, 'preflight');
    const scored = await http
      .post('/v2/models/fixture-linear/infer')
      .set('Origin', VIEWER)
      .set('Authorization', bearer(tokenFor(['ml-admin'])))
      .send(LINEAR)
      .expect(200);
    assertNoCors(scored.headers, 'inference');
    assert.ok(!listOf(scored.headers.vary).includes('origin'), `Vary ${scored.headers.vary}`);
    assertNoCors((await http.get('/v1/audit/events').set('Origin', VIEWER).expect(401)).headers, '401');
    assert.ok(!routeCatalog(app.getHttpAdapter().getInstance()).some((route) => route.method === 'OPTIONS'));
  });
});

describe('CORS: the origins of CORS_ORIGINS may call from a browser', () => {
  let app: NestFastifyApplication;
  let http: ReturnType<typeof request>;
  before(async () => {
    app = await createTestApp({
      CORS_ORIGINS: `${VIEWER},${CONSOLE}`,
      // Low, to show that a preflight is not counted against anyone: its own subject per test.
      RATE_LIMIT_REQUESTS: '2',
      RATE_LIMIT_WINDOW_MS: '60000',
    });
    await app.listen(0, '127.0.0.1');
    http = request(app.getHttpServer());
  });
  after(() => app.close());

  it("a listed origin's preflight: 204 without a token, the methods and the headers the routes read, unaudited", async () => {
    const preflight = await http
      .options('/v1/finance/fraud-scores')
      .set('Origin', CONSOLE)
      .set(PREFLIGHT)
      .set('X-Request-Id', 'cors-preflight-1')
      .expect(204);
    assert.equal(preflight.text, '');
    assertReadableBy(preflight.headers, CONSOLE, 'preflight');
    assert.deepEqual(listOf(preflight.headers['access-control-allow-methods']), [
      'get',
      'head',
      'post',
      'put',
      'delete',
    ]);
    const allowed = listOf(preflight.headers['access-control-allow-headers']);
    for (const name of [
      'authorization',
      'content-type',
      'accept',
      'idempotency-key',
      'content-encoding',
      'inference-header-content-length',
      'last-event-id',
      'x-request-id',
    ]) {
      assert.ok(allowed.includes(name), `${name} not allowed (${allowed.join(', ')})`);
    }
    assert.equal(preflight.headers['access-control-max-age'], '600');
    // With the security headers every answer has.
    assert.equal(preflight.headers['x-content-type-options'], 'nosniff');
    assert.equal(preflight.headers['cache-control'], 'no-store');
    const rows: unknown[] = await app
      .get(DataSource)
      .query('SELECT 1 FROM audit_events WHERE request_id = $1', ['cors-preflight-1']);
    assert.deepEqual(rows, [], 'a preflight is no decision: not audited');
  });

  it("preflights are not counted against the caller's rate limit; its refusal (429) is readable too", async () => {
    const token = bearer(tokenFor(['ml-admin'], { sub: 'cors-rate-1' }));
    for (let i = 0; i < 5; i++) {
      await http.options('/v2/models/fixture-linear/infer').set('Origin', VIEWER).set(PREFLIGHT).expect(204);
    }
    for (let i = 0; i < 2; i++) {
      await http.get('/v2/models/fixture-linear').set('Origin', VIEWER).set('Authorization', token).expect(200);
    }
    const limited = await http
      .get('/v2/models/fixture-linear')
      .set('Origin', VIEWER)
      .set('Authorization', token)
      .expect(429);
    assertReadableBy(limited.headers, VIEWER, '429');
    assert.ok(limited.headers['retry-after']);
  });

  it('an unlisted origin gets no CORS header: its preflight is the 405 it is without CORS', async () => {
    const preflight = await http
      .options('/v1/finance/fraud-scores')
      .set('Origin', 'https://evil.example')
      .set(PREFLIGHT);
    assert.equal(preflight.status, 405, preflight.text);
    assert.equal(preflight.headers.allow, 'POST');
    assert.match(String(preflight.headers['content-type']), /application\/problem\+json/);
    assertNoCors(preflight.headers, 'unlisted preflight');
    // Nor a listed origin's look-alike (another scheme, a port), nor a request with no Origin at all.
    for (const origin of ['http://viewer.hospital.example', `${VIEWER}:8443`]) {
      const res = await http.get('/v1/audit/events').set('Origin', origin).expect(401);
      assertNoCors(res.headers, origin);
      assert.ok(listOf(res.headers.vary).includes('origin'), 'a cache keeps answers to other origins apart');
    }
    const plain = await http.options('/v1/finance/fraud-scores').expect(405);
    assertNoCors(plain.headers, 'OPTIONS without Origin');
  });

  it("a listed origin's request: the answer and its headers are readable (allow-origin, exposed headers)", async () => {
    const scored = await http
      .post('/v2/models/fixture-linear/infer')
      .set('Origin', VIEWER)
      .set('Authorization', bearer(tokenFor(['ml-admin'], { sub: 'cors-post-1' })))
      .set('X-Request-Id', 'cors-post-1')
      .send(LINEAR)
      .expect(200);
    assertReadableBy(scored.headers, VIEWER, 'inference');
    assert.equal(scored.headers['x-request-id'], 'cors-post-1');
    assert.equal(scored.headers['x-content-type-options'], 'nosniff');
  });

  it('refusals are readable too: 401, 403, 400 (problem+json), 404, 405, an unreadable URL, and a 415 that varies on Accept', async () => {
    const noRole = bearer(tokenFor([], { sub: 'cors-refusals-1' }));
    const risk = bearer(tokenFor(['risk-engine'], { sub: 'cors-refusals-2' }));
    const pacs = bearer(tokenFor(['pacs-integration'], { sub: 'cors-refusals-3' }));
    const answers: Array<[string, request.Response, number]> = [
      ['401', await http.post('/v1/finance/fraud-scores').set('Origin', CONSOLE).send({}), 401],
      [
        '403',
        await http.post('/v1/finance/fraud-scores').set('Origin', CONSOLE).set('Authorization', noRole).send({}),
        403,
      ],
      [
        '400',
        await http.post('/v1/finance/fraud-scores').set('Origin', CONSOLE).set('Authorization', risk).send({}),
        400,
      ],
      ['404', await http.get('/v1/no-such-route').set('Origin', CONSOLE), 404],
      ['405', await http.get('/v1/finance/fraud-scores').set('Origin', CONSOLE).set('Authorization', risk), 405],
      ['bad URL', await http.get('/v1/manufacturing/assets/%E0%A4%A').set('Origin', CONSOLE), 400],
      [
        '415',
        await http
          .post('/dicomweb/studies')
          .set('Origin', CONSOLE)
          .set('Authorization', pacs)
          .set('Content-Type', 'application/json')
          .send('{}'),
        415,
      ],
    ];
    for (const [what, res, status] of answers) {
      assert.equal(res.status, status, `${what}: ${res.text.slice(0, 200)}`);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/, what);
      assertReadableBy(res.headers, CONSOLE, what);
    }
    const [, unauthenticated] = answers[0];
    assert.match(String(unauthenticated.headers['www-authenticate']), /^Bearer /);
    const [, , , , , , media] = answers;
    assert.deepEqual(listOf(media[1].headers.vary), ['origin', 'accept']);
  });

  it('the alarm stream (Server-Sent Events, written past onSend) carries the CORS headers', async () => {
    const { port } = app.getHttpServer().address() as AddressInfo;
    const aborter = new AbortController();
    const res = await fetch(`http://127.0.0.1:${port}/v1/manufacturing/alarms/stream`, {
      headers: {
        origin: VIEWER,
        authorization: bearer(tokenFor(['plant-operator'], { sub: 'cors-sse-1' })),
        accept: 'text/event-stream',
      },
      signal: aborter.signal,
    });
    try {
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
      assertReadableBy(Object.fromEntries(res.headers), VIEWER, 'alarm stream');
    } finally {
      aborter.abort();
    }
  });

  it("the preflight route is the plugin's one OPTIONS route, on every path; other paths keep their 404", async () => {
    const options = routeCatalog(app.getHttpAdapter().getInstance()).filter((route) => route.method === 'OPTIONS');
    assert.deepEqual(options, [{ method: 'OPTIONS', url: '*' }]);
    // The catch-all does not make every unknown path a 405 answering OPTIONS.
    const missing = await http.get('/v1/no-such-route').expect(404);
    assert.equal(missing.headers.allow, undefined);
  });
});
