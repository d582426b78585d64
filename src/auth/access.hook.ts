import type { FastifyInstance } from 'fastify';
import { ACCESS_ROUTE_CONFIG, AccessRule, principalOf } from '../common/access';
import { authorize } from './access.guard';
import { JwtVerifier } from './jwt-verifier';
import type { RefusalBudgets } from './refusal-limiter';
import type { SubjectRateLimit } from './subject-throttler.guard';

/**
 * Checks the caller of a route declared with RequirePermission when its request arrives, before the
 * body is read: a caller without a valid token gets 401 (and one without the permission 403) whatever
 * it sent, no body of theirs is parsed or held, and a body the parsers refuse (malformed JSON, an
 * unsupported content type, nesting too deep) is audited as the route's action, with the caller. The
 * caller's request is counted against its subject's rate limit in its tenant here too (SubjectRateLimit): past it,
 * 429 unread, whatever the body.
 * The AccessGuard lets a request checked here through without checking it again; it stays the default
 * deny for routes that declare nothing or are declared on their class (and SubjectThrottlerGuard their
 * rate limit).
 *
 * Register after the audit hook, whose onRequest counts the request before this one may refuse it.
 */
export function registerAccessHook(
  fastify: FastifyInstance,
  verifier: JwtVerifier,
  budgets: RefusalBudgets,
  rateLimit: SubjectRateLimit,
): void {
  fastify.addHook('onRequest', (request, _reply, done) => {
    const rule = (request.routeOptions.config as { [ACCESS_ROUTE_CONFIG]?: AccessRule } | undefined)?.[
      ACCESS_ROUTE_CONFIG
    ];
    if (rule === undefined || rule.public) return done();
    try {
      authorize(request, rule, verifier, budgets);
    } catch (error) {
      return done(error as Error);
    }
    const principal = principalOf(request);
    if (principal === undefined) return done();
    rateLimit.count(request, principal).then(() => done(), done);
  });
}
