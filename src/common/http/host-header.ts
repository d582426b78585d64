import type { FastifyInstance } from 'fastify';
import { AppError } from '../errors/app-error';

const REASON = 'is required in an HTTP/1.1 request (RFC 9112, section 3.2)';

/**
 * An HTTP/1.1 request without Host is refused with 400 naming `Host`, as problem+json with the security headers
 * and a request id. Node's own check (requireHostHeader, turned off in createApp) answered it with a bare 400:
 * no body and none of those headers. HTTP/1.0 needs no Host, as for Node.
 */
export function refuseRequestsWithoutHost(fastify: FastifyInstance): void {
  fastify.addHook('onRequest', (request, _reply, done) => {
    const raw = request.raw;
    if (raw.httpVersionMajor === 1 && raw.httpVersionMinor === 1 && raw.headers.host === undefined) {
      done(new AppError('VALIDATION_FAILED', `Host ${REASON}`, { fields: [{ field: 'Host', reason: REASON }] }));
      return;
    }
    done();
  });
}

const EXPECT_REASON =
  'must be 100-continue or absent: this gateway meets no other expectation (RFC 9110, section 10.1.1)';

/**
 * A request whose Expect is other than `100-continue` is refused with 417 naming `Expect`, as problem+json with the
 * security headers and a request id (and audited, as any refusal of a route). Node answered it itself, before any
 * hook, with a bare 417: no body, none of those headers, no audit row. Given a `checkExpectation` listener, Node
 * leaves the request to it; this one hands it to Fastify as any other, for the hook below to refuse.
 */
export function refuseUnmetExpectations(fastify: FastifyInstance): void {
  fastify.server.on('checkExpectation', (request, response) => fastify.server.emit('request', request, response));
  fastify.addHook('onRequest', (request, _reply, done) => {
    const expect = request.raw.headers.expect;
    if (expect !== undefined && expect.trim().toLowerCase() !== '100-continue') {
      done(
        new AppError('EXPECTATION_FAILED', `Expect ${EXPECT_REASON}`, {
          fields: [{ field: 'Expect', reason: EXPECT_REASON }],
        }),
      );
      return;
    }
    done();
  });
}
