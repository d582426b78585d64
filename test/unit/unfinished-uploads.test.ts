import assert from 'node:assert/strict';
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import Fastify from 'fastify';
import { refuseUnfinishedUploadsAtClose } from '../../src/common/http/unfinished-uploads';

/** One request on its own connection; resolves with the status once the answer is read. */
function send(port: number, method: string, path: string, body?: string, type = 'application/json'): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    if (body === undefined) return void req.end();
    req.setHeader('content-type', type);
    req.setHeader('content-length', Buffer.byteLength(body));
    req.end(body);
  });
}

describe('uploads refused at close', () => {
  it('forgets every request once it is answered, whether or not its route read a body', async () => {
    const fastify = Fastify();
    const receiving = refuseUnfinishedUploadsAtClose(fastify);
    fastify.get('/things/:id', () => ({ ok: true }));
    fastify.post('/things', (req) => ({ got: req.body }));
    await fastify.listen({ port: 0, host: '127.0.0.1' });
    try {
      const { port } = fastify.server.address() as AddressInfo;
      for (let i = 0; i < 200; i++) assert.equal(await send(port, 'GET', `/things/id-${i}`), 200);
      assert.equal(await send(port, 'POST', '/things', JSON.stringify({ a: 1 })), 200);
      assert.equal(await send(port, 'POST', '/things', 'a=1', 'application/x-www-form-urlencoded'), 415);
      assert.equal(await send(port, 'GET', '/things/id-0', JSON.stringify({ a: 1 })), 200, 'a GET with a body');
      assert.equal(receiving(), 0, 'answered requests are still held as uploads in progress');
    } finally {
      await fastify.close();
    }
  });
});
