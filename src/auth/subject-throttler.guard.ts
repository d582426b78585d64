import { ExecutionContext, Inject, Injectable } from '@nestjs/common';
import { ThrottlerGuard } from '@nestjs/throttler';
import type { ThrottlerLimitDetail } from '@nestjs/throttler';
import type { FastifyRequest } from 'fastify';
import { ACCESS_METADATA, AccessRule, noteAudit, principalOf } from '../common/access';
import { AppError } from '../common/errors/app-error';
import { RefusalBudgets } from './refusal-limiter';

/**
 * Rate limits per token subject (@nestjs/throttler, one window per subject, whichever routes it
 * calls). Runs after the AccessGuard, so the subject is a verified one; public routes are not limited.
 * A subject's first AUTH_REFUSAL_LIMIT refusals (these and its 403s) in a window of AUTH_REFUSAL_WINDOW_MS
 * are audited one by one, the rest in one summary row (AuditAggregates): a client retrying in a loop past its limit would
 * otherwise have a row written for every answer, at whatever rate the gateway can refuse.
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
    return Promise.resolve(rule?.public === true);
  }

  protected override async getTracker(request: Record<string, unknown>): Promise<string> {
    const req = request as unknown as FastifyRequest;
    return Promise.resolve(principalOf(req)?.subject ?? `ip:${req.ip}`);
  }

  /**
   * The window's key: the subject alone. The library's default keys a window by controller, handler
   * and subject (a sha256 of them at each request), which gave a subject a budget per route.
   */
  protected override generateKey(_context: ExecutionContext, tracker: string): string {
    return tracker;
  }

  protected override async throwThrottlingException(
    context: ExecutionContext,
    detail: ThrottlerLimitDetail,
  ): Promise<void> {
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    const reason = `more than ${detail.limit} requests in ${detail.ttl} ms`;
    const limited = this.budgets.subjects.refused(detail.tracker);
    noteAudit(request, limited ? { reason, aggregate: { group: `subject ${limited.key}` } } : { reason });
    return Promise.reject(
      new AppError('RATE_LIMITED', `rate limit: ${reason}`, {
        retryAfterSeconds: Math.max(1, detail.timeToBlockExpire),
      }),
    );
  }
}
