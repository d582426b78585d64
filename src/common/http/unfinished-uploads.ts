import type { IncomingHttpHeaders } from 'node:http';
import { PassThrough } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { shuttingDown } from '../errors/app-error';

/**
 * At shutdown, a body still streaming in is answered 503 SHUTTING_DOWN with Retry-After (and audited
 * like any answer) instead of holding the exit until SHUTDOWN_GRACE_MS runs out and then losing its
 * connection with no answer: a STOW study trickling in from a PACS can take minutes. Requests whose
 * body is all in (and every answer already being worked on) finish as before.
 *
 * Only a body not yet complete when its route is found goes through a PassThrough, which can be
 * failed without destroying the socket the answer must go out on; small bodies, and requests that
 * declare none, skip it. Each is forgotten once it is read or its answer is sent, whichever is first.
 * Returns how many are held (for tests).
 */
export function refuseUnfinishedUploadsAtClose(fastify: FastifyInstance): () => number {
  const receiving = new Set<PassThrough>();
  fastify.addHook('preParsing', (request, reply, payload, done) => {
    if (request.raw.complete || !hasBody(request.raw.headers)) return done(null, payload);
    const through = new PassThrough();
    receiving.add(through);
    const finished = (): void => {
      receiving.delete(through);
      payload.unpipe(through);
    };
    through.once('end', finished).once('error', finished).once('close', finished);
    // Answered without its body read to the end (a GET's, a 415): the PassThrough never ends, and was held for good.
    reply.raw.once('close', finished);
    payload.once('error', (error) => through.destroy(error));
    payload.pipe(through);
    done(null, through);
  });
  fastify.addHook('preClose', (done) => {
    for (const through of receiving) {
      through.destroy(shuttingDown('send the upload again'));
    }
    done();
  });
  return () => receiving.size;
}

/** RFC 9112 6.3: a request has a body only when it says so, by Transfer-Encoding or a non-zero Content-Length. */
function hasBody(headers: IncomingHttpHeaders): boolean {
  const length = headers['content-length'];
  return headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}
