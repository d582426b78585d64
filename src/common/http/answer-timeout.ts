import type { FastifyInstance, FastifyRequest } from 'fastify';

/**
 * An answer its client has not taken whole within `limitMs` of its writing begun is cut off: its connection is
 * closed. Node writes what the socket does not take into memory and waits, with no limit of its own; a client that
 * sent requests and read none of their answers held each large one (an 8-image lesion map as JSON is 11 MB, as
 * binary 2 MB) in the process, and its upload's share of MAX_INFLIGHT_BODY_BYTES (released when the answer is
 * done), for as long as it kept the connection open: a few such requests had every later upload answered 503 for
 * good. Registered after every other onSend hook, so that only the writing counts. The alarm stream is not an
 * answer of this kind: it is written to the raw response and never passes onSend.
 */
export function cutAnswersNotTaken(
  fastify: FastifyInstance,
  limitMs: number,
  onCut: (request: FastifyRequest) => void = () => undefined,
): void {
  fastify.addHook('onSend', (request, reply, payload, done) => {
    const answer = reply.raw;
    if (!answer.destroyed) {
      const timer = setTimeout(() => {
        onCut(request);
        answer.destroy();
      }, limitMs);
      timer.unref();
      answer.once('close', () => clearTimeout(timer));
    }
    done(null, payload);
  });
}
