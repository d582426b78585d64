import 'reflect-metadata';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { RequirePermission } from '../../src/common/access';
import { AppError, httpStatusOf } from '../../src/common/errors/app-error';
import { ACCESS_ROUTE_CONFIG } from '../../src/common/access/access.decorators';
import { DIGEST_JSON_BODY, digestBegunOf, rawJsonOf, RAW_JSON_FROM_BYTES } from '../../src/common/http/raw-json';
import { AddRouteConfig } from '../../src/common/http/route-config';
import { registerOipBinaryBodies } from '../../src/runtime/oip/oip-binary';

function batchText(items: number): string {
  return JSON.stringify({ transactions: Array.from({ length: items }, (_, i) => ({ transactionId: `t-${i}`, v: i })) });
}

function postJson(fastify: FastifyInstance, url: string, payload: string) {
  return fastify.inject({ method: 'POST', url, headers: { 'content-type': 'application/json' }, payload });
}

describe('a JSON body digested from its bytes before the parse (DIGEST_JSON_BODY)', () => {
  async function serve() {
    const events: string[] = [];
    const begun: Array<{ bytes: Buffer; parsed: () => unknown; digest: Promise<string> }> = [];
    const fastify = Fastify({ bodyLimit: 4 * 1024 * 1024 });
    // As the gateway's filter answers the parser's refusals (an AppError): by their code's status.
    fastify.setErrorHandler((error, _request, reply) =>
      error instanceof AppError
        ? reply.code(httpStatusOf(error.code).status).send({ code: error.code })
        : reply.send(error),
    );
    registerOipBinaryBodies(fastify, (bytes, parsed) => {
      events.push('begun');
      const digest = Promise.resolve(`digest of ${bytes.length} bytes`);
      begun.push({ bytes, parsed, digest });
      return digest;
    });
    const answer = (request: { body: unknown }) => {
      events.push('handler');
      const digest = digestBegunOf(request.body);
      return { begun: digest !== undefined, kept: rawJsonOf(request.body)?.length ?? 0 };
    };
    fastify.post('/early', { config: { [DIGEST_JSON_BODY]: true } }, (request) => Promise.resolve(answer(request)));
    fastify.post('/plain', (request) => Promise.resolve(answer(request)));
    await fastify.ready();
    return { fastify, events, begun };
  }

  it('begins a large body’s digest before its handler runs, and finds it by the parsed body', async () => {
    const { fastify, events, begun } = await serve();
    const text = batchText(3000);
    assert.ok(text.length >= RAW_JSON_FROM_BYTES);
    const res = await postJson(fastify, '/early', text);
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { begun: true, kept: Buffer.byteLength(text) });
    assert.deepEqual(events, ['begun', 'handler']);
    assert.equal(begun[0].bytes.toString(), text);
    assert.deepEqual(begun[0].parsed(), JSON.parse(text), 'the fallback reads the parsed body');
    await fastify.close();
  });

  it('begins nothing for a small body or a route that does not ask', async () => {
    const { fastify, events } = await serve();
    const small = await postJson(fastify, '/early', batchText(3));
    assert.deepEqual(small.json(), { begun: false, kept: 0 });
    const plain = await postJson(fastify, '/plain', batchText(3000));
    assert.equal(plain.json().begun, false);
    assert.ok(plain.json().kept > 0, 'the bytes are still kept for a later digest');
    assert.deepEqual(events, ['handler', 'handler']);
    await fastify.close();
  });

  it('refuses a body that is not JSON as before; the digest begun for it has no parsed body to fall back on', async () => {
    const { fastify, events, begun } = await serve();
    const text = batchText(3000).slice(0, -2);
    const res = await postJson(fastify, '/early', text);
    assert.equal(res.statusCode, 400);
    assert.equal(res.json().code, 'MALFORMED_JSON');
    assert.deepEqual(events, ['begun']);
    assert.equal(begun[0].parsed(), undefined);
    await fastify.close();
  });
});

describe('AddRouteConfig', () => {
  const configOf = (handler: object) =>
    Reflect.getMetadata('__fastify_route_config__', handler) as Record<string, unknown> | undefined;

  it('adds to what RequirePermission puts in the route config, in either order', () => {
    class Routes {
      @RequirePermission('finance:score', 'a')
      @AddRouteConfig({ [DIGEST_JSON_BODY]: true })
      below(): void {}

      @AddRouteConfig({ [DIGEST_JSON_BODY]: true })
      @RequirePermission('finance:score', 'b')
      above(): void {}
    }
    for (const [name, action] of [
      ['below', 'a'],
      ['above', 'b'],
    ] as const) {
      const config = configOf(Object.getOwnPropertyDescriptor(Routes.prototype, name)?.value as object);
      assert.equal(config?.[DIGEST_JSON_BODY], true, name);
      assert.deepEqual(config?.[ACCESS_ROUTE_CONFIG], { public: false, permission: 'finance:score', action }, name);
    }
  });
});
