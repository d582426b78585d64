import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ACCESS_ROUTE_CONFIG, AccessRule } from '../access';
import { AppError } from '../errors/app-error';

export interface GracefulClose {
  /**
   * Once the close has begun, answers a request to a route that needs a permission 503 SHUTTING_DOWN
   * with Retry-After. Register after the access hook, so that the refusal is audited with its caller.
   * Public routes (health, metrics, docs) and unknown paths start no work and answer as themselves:
   * readiness says 503 not-ready while shutting down, in the shape its probes and the OpenAPI expect.
   */
  refuseLateRequests(): void;
}

/**
 * Graceful shutdown over HTTP, from Fastify's preClose on (Nest runs it after the modules'
 * beforeApplicationShutdown hooks, when it closes the server): requests in flight finish, and each
 * answer then closes its connection rather than keeping it open until the keep-alive timeout.
 *
 * New connections are refused and idle ones closed, but a request can still arrive on a connection busy
 * with an earlier one (pipelined, or read in part when the close began). Fastify's return503OnClosing
 * answered it with its own JSON, unaudited, without Retry-After, security headers or request id;
 * refuseLateRequests answers it as every other refusal is. An answer with another request behind it on
 * the same connection leaves the closing to that one's answer, which would otherwise be cut off unsent.
 */
export function registerGracefulClose(fastify: FastifyInstance): GracefulClose {
  let closing = false;
  /** Requests received and not yet answered, per connection. */
  const unanswered = new WeakMap<object, number>();
  fastify.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  fastify.addHook('onRequest', (request, reply, done) => {
    const socket = request.raw.socket;
    unanswered.set(socket, (unanswered.get(socket) ?? 0) + 1);
    reply.raw.once('close', () => unanswered.set(socket, (unanswered.get(socket) ?? 1) - 1));
    done();
  });
  fastify.addHook('onSend', (request, reply, payload, done) => {
    if (closing && (unanswered.get(request.raw.socket) ?? 0) <= 1) void reply.header('Connection', 'close');
    done(null, payload);
  });
  return {
    refuseLateRequests: () =>
      fastify.addHook('onRequest', (request, _reply, done) => {
        if (!closing || !declaresPermission(request)) return done();
        done(
          new AppError('SHUTTING_DOWN', 'the gateway is shutting down; send the request again', {
            retryAfterSeconds: 1,
          }),
        );
      }),
  };
}

function declaresPermission(request: FastifyRequest): boolean {
  const config = request.routeOptions.config as { [ACCESS_ROUTE_CONFIG]?: AccessRule } | undefined;
  return config?.[ACCESS_ROUTE_CONFIG]?.public === false;
}
