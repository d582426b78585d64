import { Global, Module, OnModuleInit } from '@nestjs/common';
import { AuditInputDigester } from '../common/access';
import { ReadinessService } from '../common/health/readiness.service';
import { AppConfig } from '../config/app-config';
import { AuditAnchors } from './audit-anchor.service';
import { AuditController } from './audit.controller';
import { AuditQueryService } from './audit-query.service';
import { AuditRepository } from './audit.repository';
import { AuditWriter } from './audit-writer.service';
import { AuditAggregates } from './audit-aggregates';
import { InputDigester } from './input-digest';

/**
 * The append-only, hash-chained audit trail: group-committed writes, query and verification.
 * Global, so that every audited handler can digest its input with AuditInputDigester.
 */
@Global()
@Module({
  controllers: [AuditController],
  providers: [
    AuditRepository,
    AuditAnchors,
    AuditWriter,
    AuditAggregates,
    AuditQueryService,
    { provide: AuditInputDigester, inject: [AppConfig], useFactory: (config: AppConfig) => new InputDigester(config) },
  ],
  exports: [AuditWriter, AuditAggregates, AuditInputDigester],
})
export class AuditModule implements OnModuleInit {
  constructor(
    private readonly readiness: ReadinessService,
    private readonly writer: AuditWriter,
  ) {}

  onModuleInit(): void {
    this.readiness.register('audit', () =>
      this.writer.isHealthy ? { ready: true } : { ready: false, detail: this.writer.unhealthyDetail },
    );
  }
}
