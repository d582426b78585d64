import type { FastifyInstance } from 'fastify';
import { OIP_PREFIX } from '../../common/errors/problem.filter';

/** What Fastify labels an object it serializes as JSON. */
const FASTIFY_JSON = 'application/json; charset=utf-8';

/**
 * Every JSON answer under /v2 is labelled exactly `application/json`, as Triton and KServe label theirs: its errors
 * were (ProblemFilter sends them so, for KServe's client), while its successes said Fastify's
 * `application/json; charset=utf-8`. RFC 8259 defines no charset parameter for JSON, which is UTF-8.
 */
export function labelOipJsonAnswers(fastify: FastifyInstance): void {
  fastify.addHook('onSend', (request, reply, payload, done) => {
    const route = request.routeOptions.url;
    const oip = route === OIP_PREFIX || route?.startsWith(`${OIP_PREFIX}/`) === true;
    if (oip && reply.getHeader('content-type') === FASTIFY_JSON) void reply.header('Content-Type', 'application/json');
    done(null, payload);
  });
}
