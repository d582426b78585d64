import { ExecutionContext, Inject, Injectable } from '@nestjs/common';
import { InjectThrottlerStorage, ThrottlerGuard, ThrottlerStorage } from '@nestjs/throttler';
import type { ThrottlerLimitDetail } from '@nestjs/throttler';
import type { FastifyRequest } from 'fastify';
import { ACCESS_METADATA, AccessRule, noteAudit, principalOf } from '../common/access';
import { AppError } from '../common/errors/app-error';
import { AppConfig } from '../config/app-config';
import { callerKey, logSubjectPastBudget, RefusalBudgets, TokenCaller } from './refusal-limiter';

/** @nestjs/throttler's name for the one throttler configured without a name. */
const THROTTLER = 'default';

/** Requests SubjectRateLimit counted on arrival: the guard does not count them again. */
const counted = new WeakSet<FastifyRequest>();

/**
 * The subject's rate limit where the access hook checks a caller, on arrival and before the body is read:
 * the same window in the same storage as SubjectThrottlerGuard (the throttler module's), keyed by the
 * subject within its tenant (callerKey): one `sub` in several tenants has a window in each, so that one
 * tenant's traffic never has another's requests refused, and audited there as past a limit they were not
 * past. Counting there, a body that Fastify refuses before Nest runs (malformed JSON, an unsupported media
 * type, nesting too deep) counts too: the guard never saw those, so a subject could send them at any rate,
 * each answered and audited. A request past the limit is answered 429 unread.
 */
@Injectable()
export class SubjectRateLimit {
  private readonly limit: number;
  private readonly ttl: number;

  constructor(
    @InjectThrottlerStorage() private readonly storage: ThrottlerStorage,
    private readonly budgets: RefusalBudgets,
    config: AppConfig,
  ) {
    this.limit = config.RATE_LIMIT_REQUESTS;
    this.ttl = config.RATE_LIMIT_WINDOW_MS;
  }

  /** Counts the request against its caller's window; rejects with RATE_LIMITED past the limit. */
  async count(request: FastifyRequest, caller: TokenCaller): Promise<void> {
    if (this.limit === 0) return;
    counted.add(request);
    // As the guard calls it: the library blocks a key for blockDuration, which defaults to the ttl.
    const record = await this.storage.increment(callerKey(caller), this.ttl, this.limit, this.ttl, THROTTLER);
    if (record.isBlocked) {
      throw rateLimited(request, caller, this.limit, this.ttl, record.timeToBlockExpire, this.budgets);
    }
  }
}

/**
 * The refusal of a caller past its rate limit, noted for the audit trail (past its budget, for its summary row;
 * a request without a verified caller, which the access guard refuses before this, gets a row of its own).
 */
function rateLimited(
  request: FastifyRequest,
  caller: TokenCaller | undefined,
  limit: number,
  ttl: number,
  timeToBlockExpire: number,
  budgets: RefusalBudgets,
): AppError {
  const reason = `more than ${limit} requests in ${ttl} ms`;
  const limited = caller && budgets.callerRefused(caller);
  noteAudit(request, limited ? { reason, aggregate: { group: `subject ${limited.key}` } } : { reason });
  if (caller && limited?.first) logSubjectPastBudget(limited, caller);
  // Named by the field that says who is limited, as the 401s, 403s and the per-address 429 are (under /v2 the
  // string leads with it).
  return new AppError('RATE_LIMITED', `rate limit: ${reason}`, {
    retryAfterSeconds: Math.max(1, timeToBlockExpire),
    fields: [{ field: 'Authorization', reason: `this token's subject made ${reason}` }],
  });
}

/**
 * Rate limits per token subject within its tenant (@nestjs/throttler, one window per subject and tenant, whichever
 * routes it calls). Runs after the AccessGuard, so the subject is a verified one; public routes are not limited,
 * and requests SubjectRateLimit counted on arrival (every route declared with RequirePermission) are not counted
 * again: this guard is the limit of routes declared otherwise. A subject's first AUTH_REFUSAL_LIMIT refusals in a
 * tenant (these and its 403s) in a window of AUTH_REFUSAL_WINDOW_MS are audited one by one, the rest in one summary
 * row (AuditAggregates): a client retrying in a loop past its limit would otherwise have a row written for every
 * answer, at whatever rate the gateway can refuse.
 */
@Injectable()
export class SubjectThrottlerGuard extends ThrottlerGuard {
  // A property, so that the library's own constructor and its injection stay as they are.
  @Inject(RefusalBudgets) private readonly budgets!: RefusalBudgets;

  protected override async shouldSkip(context: ExecutionContext): Promise<boolean> {
    const rule = this.reflector.getAllAndOverride<AccessRule | undefined>(ACCESS_METADATA, [
      context.getHandler(),
      context.getClass(),
    ]);
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    return Promise.resolve(rule?.public === true || counted.has(request));
  }

  protected override async getTracker(request: Record<string, unknown>): Promise<string> {
    const req = request as unknown as FastifyRequest;
    const principal = principalOf(req);
    // A caller key is a JSON array: no subject can spell an address's key.
    return Promise.resolve(principal ? callerKey(principal) : `ip:${req.ip}`);
  }

  /**
   * The window's key: the caller alone (its subject within its tenant). The library's default keys a window by
   * controller, handler and subject (a sha256 of them at each request), which gave a subject a budget per route.
   */
  protected override generateKey(_context: ExecutionContext, tracker: string): string {
    return tracker;
  }

  protected override async throwThrottlingException(
    context: ExecutionContext,
    detail: ThrottlerLimitDetail,
  ): Promise<void> {
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    return Promise.reject(
      rateLimited(request, principalOf(request), detail.limit, detail.ttl, detail.timeToBlockExpire, this.budgets),
    );
  }
}
