import { Injectable, Logger, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { Counter } from 'prom-client';
import { MetricsService } from '../../../common/metrics/metrics.service';
import { DAY_MS, RetentionRounds } from '../../../common/retention-rounds';
import { AppConfig } from '../../../config/app-config';
import { PlantRecordsRepository } from './plant-records.repository';

/**
 * Keeps the stored predictions, opening rows and dead letters to MANUFACTURING_RETENTION_DAYS. A plant sends
 * readings without end, and a machine-failure asset stores a prediction for each: without a bound the tables grow
 * until the disk is full, and with it the audit trail beside them (embedded PGlite holds both), which then
 * refuses every decision of every domain. Alarms stay (few, and an operator's history); the audit trail is
 * append-only. A purge that fails (the database away) is logged and tried again at the next round.
 */
@Injectable()
export class PlantRetention implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger('PlantRecords');
  private readonly purged: Counter<'table'>;
  private readonly rounds = new RetentionRounds(
    () => this.purge(),
    (error) => this.logger.warn({ msg: 'purge of old plant records failed', error: String(error) }),
  );

  constructor(
    private readonly records: PlantRecordsRepository,
    private readonly config: AppConfig,
    metrics: MetricsService,
  ) {
    this.purged = new Counter({
      name: 'gateway_manufacturing_rows_purged_total',
      help: 'Predictions, opening rows and dead letters deleted for being older than MANUFACTURING_RETENTION_DAYS, by table',
      labelNames: ['table'],
      registers: [metrics.registry],
    });
  }

  onModuleInit(): void {
    if (this.config.MANUFACTURING_RETENTION_DAYS > 0) this.rounds.start();
  }

  onModuleDestroy(): Promise<void> {
    return this.rounds.stop();
  }

  /** Deletes what is older than the retention now; resolves with how many rows of each table went. */
  async purge(now = new Date()): Promise<{ predictions: number; openingRows: number; deadLetters: number }> {
    const cutoff = new Date(now.getTime() - this.config.MANUFACTURING_RETENTION_DAYS * DAY_MS);
    const gone = await this.records.purgeBefore(cutoff);
    this.purged.inc({ table: 'predictions' }, gone.predictions);
    this.purged.inc({ table: 'opening_rows' }, gone.openingRows);
    this.purged.inc({ table: 'dead_letters' }, gone.deadLetters);
    if (gone.predictions + gone.openingRows + gone.deadLetters > 0) {
      this.logger.log({ msg: 'old plant records deleted', before: cutoff.toISOString(), ...gone });
    }
    return gone;
  }
}
