import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ACCESS_ROUTE_CONFIG, AccessRule } from '../access';
import { shuttingDown } from '../errors/app-error';

export interface GracefulClose {
  /**
   * Once the close has begun, answers a request to a route that needs a permission 503 SHUTTING_DOWN
   * with Retry-After. Register after the access hook, so that the refusal is audited with its caller.
   * Public routes (health, docs) and unknown paths start no work and answer as themselves:
   * readiness says 503 not-ready while shutting down, in the shape its probes and the OpenAPI expect.
   */
  refuseLateRequests(): void;
  /**
   * Once the close has begun, the answer to the last request received on a connection closes it; the
   * others keep it open for the answers behind them. Register after every other onSend hook (the audit
   * hook's included): an answer whose turn on its connection has not come waits here for it.
   */
  closeConnectionsAfterLastAnswer(): void;
}

/**
 * Graceful shutdown over HTTP, from Fastify's preClose on (Nest runs it after the modules'
 * beforeApplicationShutdown hooks, when it closes the server): requests in flight finish, and the
 * answer to the last request received on a connection then closes it rather than keeping it open
 * until the keep-alive timeout.
 *
 * New connections are refused and idle ones closed, but a request can still arrive on a connection busy
 * with an earlier one (pipelined, or read in part when the close began). Fastify's return503OnClosing
 * answered it with its own JSON, unaudited, without Retry-After, security headers or request id;
 * refuseLateRequests answers it as every other refusal is.
 *
 * Answers go out in the order their requests came but are made in any order: a late request refused at
 * once is answered before the one in flight ahead of it, and before the requests pipelined behind it
 * have been read. Fastify marks each request that arrives while closing `Connection: close`, and Node
 * ends the connection once such an answer is written: the answers behind it were cut off unsent. So an
 * answer queued behind another is settled only when its turn comes (every request sent before it has
 * been read by then), and only the latest request received on its connection gets `Connection: close`.
 * A connection whose last answer was made before the close began is ended once that answer is written.
 */
export function registerGracefulClose(fastify: FastifyInstance): GracefulClose {
  let closing = false;
  /** The latest request received on each connection, and how many of its requests are not yet answered. */
  const connections = new WeakMap<Socket, { latest: IncomingMessage; unanswered: number }>();
  fastify.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  fastify.addHook('onRequest', (request, reply, done) => {
    const socket = request.raw.socket;
    const connection = connections.get(socket) ?? { latest: request.raw, unanswered: 0 };
    connection.latest = request.raw;
    connection.unanswered++;
    connections.set(socket, connection);
    reply.raw.once('close', () => {
      // Its last answer went out before the close began (keep-alive), behind one in flight: nothing else
      // would close the connection before the keep-alive timeout, and the close waits for it.
      if (--connection.unanswered === 0 && closing) socket.end();
    });
    done();
  });
  return {
    refuseLateRequests: () =>
      fastify.addHook('onRequest', (request, _reply, done) => {
        if (!closing || !declaresPermission(request)) return done();
        done(shuttingDown('send the request again'));
      }),
    closeConnectionsAfterLastAnswer: () =>
      fastify.addHook('onSend', (request, reply, payload, done) => {
        if (!closing) return done(null, payload);
        const socket = request.raw.socket;
        const settle = (): void => {
          if (connections.get(socket)?.latest === request.raw) {
            void reply.header('Connection', 'close');
          } else if (reply.raw.hasHeader('Connection')) {
            // Fastify's close, on a request that arrived during the close. Without the header HTTP/1.1 keeps the
            // connection open; Node still ends it after this answer if its client asked for that.
            reply.raw.removeHeader('Connection');
          }
          done(null, payload);
        };
        // Node gives a queued answer the connection once the answers ahead of it are written.
        if (reply.raw.socket !== null || socket.destroyed) return settle();
        const gone = (): void => {
          reply.raw.off('socket', turn);
          settle();
        };
        const turn = (): void => {
          socket.off('close', gone);
          settle();
        };
        reply.raw.once('socket', turn);
        socket.once('close', gone);
      }),
  };
}

function declaresPermission(request: FastifyRequest): boolean {
  const config = request.routeOptions.config as { [ACCESS_ROUTE_CONFIG]?: AccessRule } | undefined;
  return config?.[ACCESS_ROUTE_CONFIG]?.public === false;
}
