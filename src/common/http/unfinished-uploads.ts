import { PassThrough } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { AppError } from '../errors/app-error';

/**
 * At shutdown, a body still streaming in is answered 503 SHUTTING_DOWN with Retry-After (and audited
 * like any answer) instead of holding the exit until SHUTDOWN_GRACE_MS runs out and then losing its
 * connection with no answer: a STOW study trickling in from a PACS can take minutes. Requests whose
 * body is all in (and every answer already being worked on) finish as before.
 *
 * Only a body not yet complete when its route is found goes through a PassThrough, which can be
 * failed without destroying the socket the answer must go out on; small bodies skip it.
 */
export function refuseUnfinishedUploadsAtClose(fastify: FastifyInstance): void {
  const receiving = new Set<PassThrough>();
  fastify.addHook('preParsing', (request, _reply, payload, done) => {
    if (request.raw.complete) return done(null, payload);
    const through = new PassThrough();
    receiving.add(through);
    const finished = (): void => {
      receiving.delete(through);
      payload.unpipe(through);
    };
    through.once('end', finished).once('error', finished).once('close', finished);
    payload.once('error', (error) => through.destroy(error));
    payload.pipe(through);
    done(null, through);
  });
  fastify.addHook('preClose', (done) => {
    for (const through of receiving) {
      through.destroy(
        new AppError('SHUTTING_DOWN', 'the gateway is shutting down; send the upload again', { retryAfterSeconds: 1 }),
      );
    }
    done();
  });
}
