import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { ACCESS_METADATA, AccessRule, identifyCaller, noteAudit } from '../common/access';
import { AppError } from '../common/errors/app-error';
import { JwtVerifier, TokenRejected } from './jwt-verifier';
import { logAddressPastBudget, logSubjectPastBudget, RefusalBudgets } from './refusal-limiter';

/**
 * The global guard: denies by default. A route passes only if it is declared public, or the
 * caller's verified token grants the permission the route declares. A route that declares nothing
 * is refused to everyone (and fails the access-matrix test).
 */
@Injectable()
export class AccessGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly verifier: JwtVerifier,
    private readonly budgets: RefusalBudgets,
  ) {}

  canActivate(context: ExecutionContext): boolean {
    const rule = this.reflector.getAllAndOverride<AccessRule | undefined>(ACCESS_METADATA, [
      context.getHandler(),
      context.getClass(),
    ]);
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    if (rule?.public) {
      if (rule.identifies) identify(request, this.verifier);
      return true;
    }
    // The access hook checked this caller on arrival, by the same rule (RequirePermission puts it in both places).
    if (authorized.has(request)) return true;
    authorize(request, rule, this.verifier, this.budgets);
    return true;
  }
}

/** Requests whose caller `authorize` let through: checked once, whether by the access hook or the guard. */
const authorized = new WeakSet<FastifyRequest>();

/**
 * Checks the caller of a non-public route (`rule` undefined: a route that declares nothing) and notes
 * who it is and why it was refused for the audit trail. Throws AppError UNAUTHENTICATED or FORBIDDEN,
 * or RATE_LIMITED for a request without a valid token from an address past its budget of such
 * refusals (RefusalBudgets); those, and a subject's 403s past its budget, are audited in one summary
 * row per window.
 */
export function authorize(
  request: FastifyRequest,
  rule: Exclude<AccessRule, { public: true }> | undefined,
  verifier: JwtVerifier,
  budgets: RefusalBudgets,
): void {
  noteAudit(request, rule ? { action: rule.action, permission: rule.permission } : { action: 'undeclared-route' });
  const token = bearerToken(request.headers.authorization);
  if (token === undefined) return unauthenticated(request, 'missing bearer token', budgets);
  let principal;
  try {
    principal = verifier.verify(token);
  } catch (error) {
    if (error instanceof TokenRejected) return unauthenticated(request, error.message, budgets);
    throw error;
  }
  noteAudit(request, { principal });
  if (!rule) return forbidden(request, principal.subject, 'this route declares no permission', budgets);
  if (!principal.permissions.has(rule.permission)) {
    return forbidden(request, principal.subject, `requires permission ${rule.permission}`, budgets);
  }
  authorized.add(request);
}

/** A public route that shows more to a known caller: its token, if it verifies, names it; if not, it stays anonymous. */
function identify(request: FastifyRequest, verifier: JwtVerifier): void {
  const token = bearerToken(request.headers.authorization);
  if (token === undefined) return;
  try {
    identifyCaller(request, verifier.verify(token));
  } catch (error) {
    if (!(error instanceof TokenRejected)) throw error;
  }
}

/** 401, or 429 past the address's budget of refusals: counted into its summary row, with the reason still given. */
function unauthenticated(request: FastifyRequest, reason: string, budgets: RefusalBudgets): never {
  const limited = budgets.addresses.refused(request.ip);
  if (!limited) return deny(request, 'UNAUTHENTICATED', reason);
  if (limited.first) logAddressPastBudget(limited);
  const why = `${reason}; more than ${limited.limit} requests without a valid token from this address in ${limited.windowSeconds} s`;
  noteAudit(request, { reason: why, aggregate: { group: `address ${limited.key}`, clientAddress: limited.key } });
  throw new AppError('RATE_LIMITED', why, {
    retryAfterSeconds: limited.retryAfterSeconds,
    fields: [{ field: 'Authorization', reason }],
  });
}

/** 403; past the subject's budget of refusals, audited in its summary row rather than a row of its own. */
function forbidden(request: FastifyRequest, subject: string, reason: string, budgets: RefusalBudgets): never {
  const limited = budgets.subjects.refused(subject);
  if (limited) noteAudit(request, { aggregate: { group: `subject ${limited.key}` } });
  if (limited?.first) logSubjectPastBudget(limited);
  return deny(request, 'FORBIDDEN', reason);
}

function deny(request: FastifyRequest, code: 'UNAUTHENTICATED' | 'FORBIDDEN', reason: string): never {
  noteAudit(request, { reason });
  // The token travels in Authorization: a refusal of it (missing, not valid, short of the permission) names that
  // header as any other refusal names its field (under /v2, `Authorization: <reason>`).
  throw new AppError(code, reason, { fields: [{ field: 'Authorization', reason }] });
}

function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const match = /^Bearer\s+([A-Za-z0-9._~+/=-]+)\s*$/i.exec(header);
  return match?.[1];
}
