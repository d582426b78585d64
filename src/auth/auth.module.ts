import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { ThrottlerModule } from '@nestjs/throttler';
import { AppConfig } from '../config/app-config';
import { AccessGuard } from './access.guard';
import { JwtVerifier } from './jwt-verifier';
import { KeyStore } from './key-store';
import { RefusalBudgets } from './refusal-limiter';
import { SlidingWindowThrottlerStorage } from './sliding-window.storage';
import { SubjectRateLimit, SubjectThrottlerGuard } from './subject-throttler.guard';

/**
 * JWT verification, roles to permissions, the default-deny guard, per-subject rate limits, and the budgets of
 * refusals audited one by one (per address without a valid token, per subject).
 */
@Module({
  imports: [
    ThrottlerModule.forRootAsync({
      inject: [AppConfig],
      useFactory: (config: AppConfig) => ({
        throttlers: [{ ttl: config.RATE_LIMIT_WINDOW_MS, limit: Math.max(1, config.RATE_LIMIT_REQUESTS) }],
        skipIf: () => config.RATE_LIMIT_REQUESTS === 0,
        setHeaders: false,
        storage: new SlidingWindowThrottlerStorage(),
      }),
    }),
  ],
  providers: [
    { provide: KeyStore, inject: [AppConfig], useFactory: (config: AppConfig) => new KeyStore(config) },
    JwtVerifier,
    {
      provide: RefusalBudgets,
      inject: [AppConfig],
      useFactory: (config: AppConfig) => new RefusalBudgets(config.AUTH_REFUSAL_LIMIT, config.AUTH_REFUSAL_WINDOW_MS),
    },
    SubjectRateLimit,
    // Guards run in this order: who is calling and may they, then how often.
    { provide: APP_GUARD, useClass: AccessGuard },
    { provide: APP_GUARD, useClass: SubjectThrottlerGuard },
  ],
  exports: [JwtVerifier, RefusalBudgets, SubjectRateLimit],
})
export class AuthModule {}
