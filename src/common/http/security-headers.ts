import type { FastifyInstance } from 'fastify';

/** Swagger UI: an HTML page with scripts and styles, which the API's content policy would block. */
const DOCS_PREFIX = '/docs';

/**
 * Every answer carries scores, findings, audit rows or the state of the gateway: no cache (a proxy's or
 * a browser's) may keep it, no browser may sniff it into HTML or frame it (OWASP's REST headers). No
 * answer but the API docs is a page: it may load nothing.
 */
const API_HEADERS: Readonly<Record<string, string>> = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
};
const { 'content-security-policy': _policy, ...DOCS_HEADERS } = API_HEADERS;

/** The security headers of an answer to `url` (a request target, query string included or not). */
export function securityHeaders(url: string): Readonly<Record<string, string>> {
  const path = url.split('?')[0];
  return path === DOCS_PREFIX || path.startsWith(`${DOCS_PREFIX}/`) ? DOCS_HEADERS : API_HEADERS;
}

/**
 * Sets the security headers when a request arrives, so that every answer routed has them however it
 * is sent (a route's, an error's, a 404, Nest's @Sse, which copies the reply's headers); a route that
 * sets its own Cache-Control (the alarm stream) overrides this one. What the router cannot read
 * (frameworkErrors) and what Node's parser refuses (clientErrorHandler) add them themselves.
 */
export function registerSecurityHeaders(fastify: FastifyInstance): void {
  fastify.addHook('onRequest', (request, reply, done) => {
    void reply.headers(securityHeaders(request.url));
    done();
  });
}
