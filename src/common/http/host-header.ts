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
