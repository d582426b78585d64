import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { ACCESS_METADATA, AccessRule, identifyCaller, noteAudit, Principal } from '../common/access';
import { AppError, BearerChallenge } from '../common/errors/app-error';
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
  // Node keeps the first of several; a proxy in front that honours the last would have authorised another token.
  if (authorizationHeaders(request) > 1) {
    return unauthenticated(request, 'more than one Authorization header', { error: 'invalid_request' }, budgets);
  }
  const credentials = bearerCredentials(request.headers.authorization);
  if (credentials === 'none') return unauthenticated(request, 'missing bearer token', {}, budgets);
  if (credentials === 'malformed') {
    return unauthenticated(request, 'malformed bearer token', { error: 'invalid_request' }, budgets);
  }
  let principal;
  try {
    principal = verifier.verify(credentials.token);
  } catch (error) {
    if (error instanceof TokenRejected)
      return unauthenticated(request, error.message, { error: 'invalid_token' }, budgets);
    throw error;
  }
  noteAudit(request, { principal });
  if (!rule) return forbidden(request, principal, 'this route declares no permission', {}, budgets);
  if (!principal.permissions.has(rule.permission)) {
    const scope = { scope: rule.permission };
    return forbidden(request, principal, `requires permission ${rule.permission}`, scope, budgets);
  }
  authorized.add(request);
}

/** A public route that shows more to a known caller: its token, if it verifies, names it; if not, it stays anonymous. */
function identify(request: FastifyRequest, verifier: JwtVerifier): void {
  const credentials = bearerCredentials(request.headers.authorization);
  if (typeof credentials === 'string' || authorizationHeaders(request) > 1) return;
  try {
    identifyCaller(request, verifier.verify(credentials.token));
  } catch (error) {
    if (!(error instanceof TokenRejected)) throw error;
  }
}

/** 401, or 429 past the address's budget of refusals: counted into its summary row, with the reason still given. */
function unauthenticated(
  request: FastifyRequest,
  reason: string,
  challenge: BearerChallenge,
  budgets: RefusalBudgets,
): never {
  const limited = budgets.addresses.refused(request.ip);
  if (!limited) return deny(request, 'UNAUTHENTICATED', reason, challenge);
  if (limited.first) logAddressPastBudget(limited);
  const why = `${reason}; more than ${limited.limit} requests without a valid token from this address in ${limited.windowSeconds} s`;
  noteAudit(request, { reason: why, aggregate: { group: `address ${limited.key}`, clientAddress: limited.key } });
  throw new AppError('RATE_LIMITED', why, {
    retryAfterSeconds: limited.retryAfterSeconds,
    fields: [{ field: 'Authorization', reason }],
  });
}

/**
 * 403; past the budget of refusals of the token's subject in its tenant, audited in their summary row rather than
 * a row of its own.
 */
function forbidden(
  request: FastifyRequest,
  principal: Principal,
  reason: string,
  scope: { scope?: string },
  budgets: RefusalBudgets,
): never {
  const limited = budgets.callerRefused(principal);
  if (limited) noteAudit(request, { aggregate: { group: `subject ${limited.key}` } });
  if (limited?.first) logSubjectPastBudget(limited, principal);
  return deny(request, 'FORBIDDEN', reason, { error: 'insufficient_scope', ...scope });
}

function deny(
  request: FastifyRequest,
  code: 'UNAUTHENTICATED' | 'FORBIDDEN',
  reason: string,
  challenge: BearerChallenge,
): never {
  noteAudit(request, { reason });
  // The token travels in Authorization: a refusal of it (missing, not valid, short of the permission) names that
  // header as any other refusal names its field (under /v2, `Authorization: <reason>`).
  throw new AppError(code, reason, { fields: [{ field: 'Authorization', reason }], challenge });
}

/** How many Authorization header lines the request has (`request.headers` shows the first alone). */
function authorizationHeaders(request: FastifyRequest): number {
  const raw = request.raw.rawHeaders;
  let count = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === 'authorization') count++;
  return count;
}

/**
 * The bearer token of an Authorization header (RFC 6750 2.1: `Bearer` and one token68); `none` without one (no
 * header, or another scheme such as Basic), `malformed` where the scheme is Bearer but what follows is not a token.
 */
function bearerCredentials(header: string | undefined): { token: string } | 'none' | 'malformed' {
  if (!header) return 'none';
  const match = /^Bearer\s+([A-Za-z0-9._~+/=-]+)\s*$/i.exec(header);
  if (match) return { token: match[1] };
  return /^Bearer(\s|$)/i.test(header) ? 'malformed' : 'none';
}
