import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { AccessGuard } from '../../src/auth/access.guard';
import { JwtVerifier, TokenRejected } from '../../src/auth/jwt-verifier';
import { RefusalBudgets } from '../../src/auth/refusal-limiter';
import { auditNoteOf, Principal, Public, RequirePermission } from '../../src/common/access';
import { AppError } from '../../src/common/errors/app-error';

class Routes {
  @Public()
  open(): void {}

  @RequirePermission('finance:score', 'fraud.score')
  score(): void {}

  /** Declares nothing: must be refused to everyone. */
  forgotten(): void {}
}

const verifier = {
  verify(token: string): Principal {
    if (token !== 'good') throw new TokenRejected('invalid signature');
    return {
      subject: 'risk-engine-7',
      roles: ['risk-engine'],
      permissions: new Set(['finance:score']),
      validUntil: Date.now() + 300_000,
    };
  },
} as unknown as JwtVerifier;

function context(
  handler: keyof Routes,
  authorization?: string,
  ip = '192.0.2.1',
): { ctx: ExecutionContext; request: FastifyRequest } {
  const request = {
    headers: authorization ? { authorization } : {},
    raw: { rawHeaders: authorization ? ['Authorization', authorization] : [] },
    ip,
  } as unknown as FastifyRequest;
  const ctx = {
    // eslint-disable-next-line @typescript-eslint/unbound-method -- the handler is only a metadata key here
    getHandler: () => Routes.prototype[handler],
    getClass: () => Routes,
    switchToHttp: () => ({ getRequest: () => request }),
  } as unknown as ExecutionContext;
  return { ctx, request };
}

const guard = new AccessGuard(new Reflector(), verifier, new RefusalBudgets(0, 60_000));
const refusedWith = (code: string, reason: RegExp) => (error: unknown) =>
  error instanceof AppError && error.code === code && reason.test(error.detail);

describe('access guard (default deny)', () => {
  it('lets public routes through without a token, and does not audit them', () => {
    const { ctx, request } = context('open');
    assert.equal(guard.canActivate(ctx), true);
    assert.equal(auditNoteOf(request), undefined);
  });

  it('needs a valid bearer token and the declared permission', () => {
    assert.throws(
      () => guard.canActivate(context('score').ctx),
      refusedWith('UNAUTHENTICATED', /missing bearer token/),
    );
    assert.throws(
      () => guard.canActivate(context('score', 'Basic abc').ctx),
      refusedWith('UNAUTHENTICATED', /missing/),
    );
    for (const malformed of ['Bearer abc$def', 'Bearer', 'bearer a b']) {
      assert.throws(
        () => guard.canActivate(context('score', malformed).ctx),
        refusedWith('UNAUTHENTICATED', /^malformed bearer token$/),
      );
    }
    assert.throws(
      () => guard.canActivate(context('score', 'Bearer bad').ctx),
      refusedWith('UNAUTHENTICATED', /invalid signature/),
    );
    const { ctx, request } = context('score', 'Bearer good');
    assert.equal(guard.canActivate(ctx), true);
    assert.equal(auditNoteOf(request)?.action, 'fraud.score');
    assert.equal(auditNoteOf(request)?.principal?.subject, 'risk-engine-7');
  });

  it('says in each refusal what its Bearer challenge names (RFC 6750 3.1)', () => {
    const challengeOf = (handler: keyof Routes, authorization?: string): unknown => {
      try {
        guard.canActivate(context(handler, authorization).ctx);
      } catch (error) {
        return (error as AppError).challenge;
      }
      assert.fail('not refused');
    };
    assert.deepEqual(challengeOf('score'), {});
    assert.deepEqual(challengeOf('score', 'Basic abc'), {});
    assert.deepEqual(challengeOf('score', 'Bearer abc$def'), { error: 'invalid_request' });
    assert.deepEqual(challengeOf('score', 'Bearer bad'), { error: 'invalid_token' });
    assert.deepEqual(challengeOf('forgotten', 'Bearer good'), { error: 'insufficient_scope' });
  });

  it('refuses a request with more than one Authorization header, whatever the second holds', () => {
    for (const second of ['Bearer good', 'Bearer bad', 'Basic abc']) {
      const { ctx, request } = context('score', 'Bearer good');
      request.raw.rawHeaders.push('authorization', second);
      assert.throws(
        () => guard.canActivate(ctx),
        (error: unknown) =>
          refusedWith('UNAUTHENTICATED', /^more than one Authorization header$/)(error) &&
          (error as AppError).challenge?.error === 'invalid_request',
      );
      assert.equal(auditNoteOf(request)?.reason, 'more than one Authorization header');
    }
  });

  it('refuses a route that declares no permission, even to a valid token, and audits the refusal', () => {
    const { ctx, request } = context('forgotten', 'Bearer good');
    assert.throws(() => guard.canActivate(ctx), refusedWith('FORBIDDEN', /declares no permission/));
    assert.equal(auditNoteOf(request)?.action, 'undeclared-route');
    assert.equal(auditNoteOf(request)?.reason, 'this route declares no permission');
  });

  it("answers 429 past an address's budget of refused tokens, counted into its summary, and still lets valid tokens through", () => {
    let now = 1_000_000;
    const limited = new AccessGuard(new Reflector(), verifier, new RefusalBudgets(2, 60_000, () => now));
    for (let i = 0; i < 2; i++) {
      const { ctx, request } = context('score', 'Bearer bad', '198.51.100.7');
      assert.throws(() => limited.canActivate(ctx), refusedWith('UNAUTHENTICATED', /invalid signature/));
      assert.equal(auditNoteOf(request)?.aggregate, undefined);
    }
    now += 15_000;
    const { ctx, request } = context('score', undefined, '198.51.100.7');
    assert.throws(
      () => limited.canActivate(ctx),
      (error: unknown) =>
        error instanceof AppError &&
        error.code === 'RATE_LIMITED' &&
        error.retryAfterSeconds === 45 &&
        /^missing bearer token; more than 2 requests without a valid token from this address in 60 s$/.test(
          error.detail,
        ) &&
        error.fields[0]?.field === 'Authorization',
    );
    assert.deepEqual(auditNoteOf(request)?.aggregate, { group: 'address 198.51.100.7', clientAddress: '198.51.100.7' });
    assert.match(auditNoteOf(request)?.reason ?? '', /^missing bearer token; more than 2/);
    // A valid token from the same address, and a refused one from another address, are not affected.
    assert.equal(limited.canActivate(context('score', 'Bearer good', '198.51.100.7').ctx), true);
    assert.throws(
      () => limited.canActivate(context('score', 'Bearer bad', '203.0.113.9').ctx),
      refusedWith('UNAUTHENTICATED', /invalid signature/),
    );
    // A token refused for want of a permission (403) is not counted: its caller is known.
    assert.throws(
      () => limited.canActivate(context('forgotten', 'Bearer good', '203.0.113.9').ctx),
      refusedWith('FORBIDDEN', /declares no permission/),
    );
    // The next window starts a new budget.
    now += 45_000;
    assert.throws(
      () => limited.canActivate(context('score', 'Bearer bad', '198.51.100.7').ctx),
      refusedWith('UNAUTHENTICATED', /invalid signature/),
    );
  });

  it("counts a subject's 403s against its budget: past it, still 403, audited in the subject's summary row", () => {
    const budgeted = new AccessGuard(new Reflector(), verifier, new RefusalBudgets(2, 60_000, () => 0));
    const notes = [0, 1, 2].map(() => {
      const { ctx, request } = context('forgotten', 'Bearer good');
      assert.throws(() => budgeted.canActivate(ctx), refusedWith('FORBIDDEN', /declares no permission/));
      return auditNoteOf(request);
    });
    assert.deepEqual(
      notes.map((n) => n?.aggregate),
      [undefined, undefined, { group: 'subject [null,"risk-engine-7"]' }],
    );
    assert.equal(notes[2]?.reason, 'this route declares no permission');
  });
});
