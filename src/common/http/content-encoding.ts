import type { FastifyInstance } from 'fastify';
import { echoedHeaderValue } from '../echoed-key';
import { AppError } from '../errors/app-error';

/**
 * No route reads a compressed body: a gzip or deflate body would be parsed as the bytes it is. A
 * `Content-Encoding` other than `identity` is refused with 415 before the body is read.
 */
export function refuseEncodedBodies(fastify: FastifyInstance): void {
  fastify.addHook('preParsing', (request, _reply, payload, done) => {
    const encoding = request.headers['content-encoding'];
    if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') {
      const reason = `${echoedHeaderValue(encoding)} is not accepted, only identity: send the body uncompressed`;
      done(
        new AppError('UNSUPPORTED_MEDIA_TYPE', `Content-Encoding: ${reason}`, {
          fields: [{ field: 'Content-Encoding', reason }],
        }),
      );
      return;
    }
    done(null, payload);
  });
}
