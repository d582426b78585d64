import { Injectable, Logger, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { Counter } from 'prom-client';
import { MetricsService } from '../../../common/metrics/metrics.service';
import { DAY_MS, RetentionRounds } from '../../../common/retention-rounds';
import { AppConfig } from '../../../config/app-config';
import { MedicalFindingsRepository } from './medical-findings.repository';

/**
 * Keeps the stored findings to MEDICAL_FINDINGS_RETENTION_DAYS, where a hospital's policy bounds how long
 * the gateway may hold them (the PACS keeps the SR, the system of record). Every study STOW-RS or DIMSE
 * sends adds rows; unbounded they grow until the disk is full, and with it the audit trail beside them on
 * embedded PGlite. A purge that fails is logged and tried again at the next round.
 */
@Injectable()
export class MedicalFindingsRetention implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger('MedicalFindings');
  private readonly purged: Counter;
  private readonly rounds = new RetentionRounds(
    () => this.purge(),
    (error) => this.logger.warn({ msg: 'purge of old medical findings failed', error: String(error) }),
  );

  constructor(
    private readonly findings: MedicalFindingsRepository,
    private readonly config: AppConfig,
    metrics: MetricsService,
  ) {
    this.purged = new Counter({
      name: 'gateway_medical_findings_purged_total',
      help: 'Stored findings deleted for being older than MEDICAL_FINDINGS_RETENTION_DAYS',
      registers: [metrics.registry],
    });
  }

  onModuleInit(): void {
    if (this.config.MEDICAL_FINDINGS_RETENTION_DAYS > 0) this.rounds.start();
  }

  onModuleDestroy(): Promise<void> {
    return this.rounds.stop();
  }

  /** Deletes what is older than the retention now; resolves with how many findings rows went. */
  async purge(now = new Date()): Promise<number> {
    const cutoff = new Date(now.getTime() - this.config.MEDICAL_FINDINGS_RETENTION_DAYS * DAY_MS);
    const gone = await this.findings.purgeBefore(cutoff);
    this.purged.inc(gone);
    if (gone > 0) this.logger.log({ msg: 'old medical findings deleted', before: cutoff.toISOString(), rows: gone });
    return gone;
  }
}
