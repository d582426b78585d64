import assert from 'node:assert/strict';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import Fastify from 'fastify';
import { cutAnswersNotTaken } from '../../src/common/http/answer-timeout';
import { registerBodyBudget, UploadBudget } from '../../src/common/http/body-budget';

/** Far more than loopback's socket buffers take: the answer waits in the process until its client reads. */
const ANSWER_BYTES = 64 * 1024 * 1024;
const UPLOAD_BYTES = 600 * 1024;

/** A server whose route answers ANSWER_BYTES to any upload, under a budget of less than two uploads. */
async function server(limitMs: number) {
  const fastify = Fastify();
  const budget = new UploadBudget(UPLOAD_BYTES + UPLOAD_BYTES / 2);
  registerBodyBudget(fastify, budget);
  // The budget's refusal, as the gateway's filter answers it (UPLOADS_BUSY is a 503).
  fastify.setErrorHandler((error: { code?: string }, _request, reply) => reply.code(503).send({ code: error.code }));
  const cut: string[] = [];
  cutAnswersNotTaken(fastify, limitMs, (request) => cut.push(request.url));
  fastify.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_request, body, done) =>
    done(null, body),
  );
  fastify.post('/answer', (_request, reply) => reply.type('application/octet-stream').send(Buffer.alloc(ANSWER_BYTES)));
  await fastify.listen({ port: 0, host: '127.0.0.1' });
  const { port } = fastify.server.address() as AddressInfo;
  return { fastify, budget, cut, port };
}

/** Posts an upload on a raw socket and reads nothing of the answer (its socket, to destroy at the end). */
function uploadAndNeverRead(port: number): Socket {
  const socket = connect(port, '127.0.0.1');
  socket.write(
    `POST /answer HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${UPLOAD_BYTES}\r\n\r\n`,
  );
  socket.write(Buffer.alloc(UPLOAD_BYTES));
  socket.pause();
  return socket;
}

const until = async (done: () => boolean, withinMs: number): Promise<number> => {
  const started = Date.now();
  while (!done()) {
    assert.ok(Date.now() - started < withinMs, `not within ${withinMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return Date.now() - started;
};

async function upload(port: number): Promise<{ status: number; bytes: number; code?: string }> {
  const res = await fetch(`http://127.0.0.1:${port}/answer`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/octet-stream' },
    body: Buffer.alloc(UPLOAD_BYTES),
  });
  if (res.status !== 200) return { status: res.status, bytes: 0, code: ((await res.json()) as { code: string }).code };
  return { status: res.status, bytes: (await res.arrayBuffer()).byteLength };
}

describe('answers not taken (cutAnswersNotTaken)', () => {
  it('closes the connection of an answer its client does not read, releasing its upload budget', async () => {
    // The limit leaves the refused upload below time to be answered on a loaded machine (with 1 s it was sometimes
    // answered after the cut, 200 instead of 503).
    const { fastify, budget, cut, port } = await server(3000);
    try {
      const stuck = uploadAndNeverRead(port);
      try {
        // Held while its answer waits: another upload does not fit beside it.
        await until(() => budget.held > 0, 5000);
        assert.deepEqual(await upload(port), { status: 503, bytes: 0, code: 'UPLOADS_BUSY' });
        // The server's side closes (the client, reading nothing, may not see it): the answer and its share go.
        await until(() => budget.held === 0, 15000);
        assert.deepEqual(cut, ['/answer']);
      } finally {
        stuck.destroy();
      }
      assert.deepEqual(await upload(port), { status: 200, bytes: ANSWER_BYTES });
    } finally {
      await fastify.close();
    }
  });

  it('leaves an answer its client reads alone', async () => {
    // Far above the time a client that reads takes for 64 MB, even on a loaded machine.
    const { fastify, cut, port } = await server(30000);
    try {
      assert.deepEqual(await upload(port), { status: 200, bytes: ANSWER_BYTES });
      assert.deepEqual(cut, []);
    } finally {
      await fastify.close();
    }
  });
});
