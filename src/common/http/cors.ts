import fastifyCors from '@fastify/cors';
import type { FastifyInstance } from 'fastify';
import { ACCESS_ROUTE_CONFIG, type AccessRule } from '../access';
import { REQUEST_ID_HEADER } from './request-id';

/** The methods the routes answer (HEAD: Fastify's own for each GET). */
export const CORS_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE'] as const;

/**
 * The request headers the routes read that a browser app may send: the token, the body's type and encoding, the
 * answer's form (JSON or a DICOM SR), the finance routes' Idempotency-Key, the OIP binary extension's header length,
 * the alarm stream's resume point, and the caller's correlation id.
 */
export const CORS_REQUEST_HEADERS = [
  'Authorization',
  'Content-Type',
  'Accept',
  'Content-Encoding',
  'Idempotency-Key',
  'Inference-Header-Content-Length',
  'Last-Event-ID',
  REQUEST_ID_HEADER,
] as const;

/**
 * The response headers a browser app may read beyond the CORS-safelisted ones (Content-Type, Content-Length, ...):
 * the request id a 500 asks to quote, when to retry a 429 or 503, the challenge of a 401 or 403 (the permission
 * wanted), the methods of a 405, a replayed finance answer, the length of an OIP binary answer's JSON header.
 */
export const CORS_EXPOSED_HEADERS = [
  REQUEST_ID_HEADER,
  'Retry-After',
  'WWW-Authenticate',
  'Allow',
  'Idempotent-Replayed',
  'Inference-Header-Content-Length',
] as const;

/** The preflight route @fastify/cors adds (`OPTIONS *`): public, as a preflight never carries a token. */
const PREFLIGHT_RULE: AccessRule = { public: true };

/** Which browser apps may call the gateway (CORS_ORIGINS, exact origins as validated), and for how long a preflight holds. */
export class CorsPolicy {
  private readonly origins: ReadonlySet<string>;

  constructor(
    origins: readonly string[],
    readonly maxAgeSeconds: number,
  ) {
    this.origins = new Set(origins);
  }

  allows(origin: string | undefined): boolean {
    return origin !== undefined && this.origins.has(origin);
  }

  /**
   * The CORS headers of an answer made outside the request's hooks (a URL the router cannot read: frameworkErrors),
   * as @fastify/cors would have set them.
   */
  answerHeaders(origin: string | undefined): Record<string, string> {
    if (!this.allows(origin)) return { vary: 'Origin' };
    return {
      vary: 'Origin',
      'access-control-allow-origin': origin as string,
      'access-control-expose-headers': CORS_EXPOSED_HEADERS.join(', '),
    };
  }
}

/**
 * Lets the browser apps of `policy` call the gateway, with @fastify/cors: an answer to a request from one of them
 * carries Access-Control-Allow-Origin (that origin) and the exposed headers, a preflight from one is answered 204
 * naming the methods and headers allowed; every answer varies on Origin. A request from any other origin, or with
 * none, is left as it is: no CORS header, and an OPTIONS answered as without CORS. No credentials (cookies): the
 * gateway takes bearer tokens only.
 *
 * Registered (and awaited, so that its request hook takes its place now) after the security headers' and the
 * graceful close's hooks and before the caller is checked, counted or audited: a preflight (which never carries a
 * token) is answered with the security headers, unrefused, unaudited and not counted against anyone's rate limit,
 * and a refusal (401, 403, 429) or a 404 carries the CORS headers, which a browser app needs to read it. Not with
 * app.enableCors, which wraps the same plugin but runs its hook from Nest's adapter before every hook of the
 * gateway's: a preflight's answer would have no security headers, nor would the graceful close count its request.
 */
export async function registerCors(fastify: FastifyInstance, policy: CorsPolicy): Promise<void> {
  fastify.addHook('onRoute', (route) => {
    if (route.method === 'OPTIONS' && route.url === '*') {
      route.config = { ...route.config, [ACCESS_ROUTE_CONFIG]: PREFLIGHT_RULE };
    }
  });
  await fastify.register(fastifyCors, {
    // false leaves the request to the gateway as without CORS; true echoes its Origin.
    origin: (origin, callback) => callback(null, policy.allows(origin)),
    methods: [...CORS_METHODS],
    allowedHeaders: [...CORS_REQUEST_HEADERS],
    exposedHeaders: [...CORS_EXPOSED_HEADERS],
    credentials: false,
    maxAge: policy.maxAgeSeconds,
    optionsSuccessStatus: 204,
    // An OPTIONS from a listed origin without Access-Control-Request-Method (no browser's preflight) is answered as
    // one, not with the plugin's text/plain 400: every refusal of the gateway is problem+json.
    strictPreflight: false,
  });
}
