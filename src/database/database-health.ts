import { BeforeApplicationShutdown, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { ReadinessService } from '../common/health/readiness.service';
import { AppConfig } from '../config/app-config';
import { STORAGE_FAULT_WORDS, StorageFault, storageFaultOf } from './storage-unavailable';

/**
 * The `database` check of /health/ready: every DATABASE_CHECK_INTERVAL_MS the gateway asks the database
 * (`SELECT 1` through the DataSource's pool, as the domains' statements go) whether it answers. Without it,
 * readiness learnt of an outage only from a failed audit commit, so an idle gateway whose database was gone
 * said ready until its first request was refused. Not ready from the first check that fails until one
 * succeeds; the statement's own limits bound a check (the pool's 2 s to connect, the 10 s query timeout),
 * and one runs at a time.
 */
@Injectable()
export class DatabaseHealth implements OnModuleInit, BeforeApplicationShutdown {
  private readonly logger = new Logger('Database');
  private readonly intervalMs: number;
  private timer: NodeJS.Timeout | undefined;
  private checking = false;
  /** Why the last check failed; undefined while the database answers. */
  private fault: StorageFault | undefined;

  constructor(
    config: AppConfig,
    private readonly dataSource: DataSource,
    private readonly readiness: ReadinessService,
  ) {
    this.intervalMs = config.DATABASE_CHECK_INTERVAL_MS;
  }

  onModuleInit(): void {
    if (this.intervalMs === 0) return;
    this.readiness.register('database', () =>
      this.fault === undefined
        ? { ready: true }
        : { ready: false, detail: `the database is ${STORAGE_FAULT_WORDS[this.fault]}` },
    );
    this.timer = setInterval(() => void this.check(), this.intervalMs).unref();
  }

  beforeApplicationShutdown(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async check(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      await this.dataSource.query('SELECT 1');
      if (this.fault !== undefined) this.logger.log({ msg: 'database answers again', was: this.fault });
      this.fault = undefined;
    } catch (error) {
      if (this.timer === undefined) return; // shutting down: the pool is closing, not the database
      // SELECT 1 fails for no fault of the statement: whatever the error, the database does not serve.
      const fault = storageFaultOf(error) ?? 'outage';
      if (this.fault === undefined) {
        this.logger.error({ msg: 'database does not answer; not ready until it does', fault, error: String(error) });
      }
      this.fault = fault;
    } finally {
      this.checking = false;
    }
  }
}
