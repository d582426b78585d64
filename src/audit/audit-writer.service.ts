import { hostname } from 'node:os';
import { BeforeApplicationShutdown, Injectable, Logger } from '@nestjs/common';
import { Counter, Histogram } from 'prom-client';
import { MetricsService } from '../common/metrics/metrics.service';
import { AppConfig } from '../config/app-config';
import { ChainedFields, GENESIS_HASH, hashOf } from './audit-chain';
import { AuditRepository, AuditRow } from './audit.repository';

/** An audit row before it is placed in the chain. */
export type AuditDraft = Omit<ChainedFields, 'writerId' | 'seq' | 'prevHash'>;

export class AuditUnavailable extends Error {}

interface Pending {
  draft: AuditDraft;
  done: (error?: Error) => void;
}

/**
 * Group commit: `record` resolves once its row is committed. Rows that arrive while a commit is in
 * flight wait together and go in the next single INSERT, so under load many requests share one
 * round trip. Rows are chained (seq, prev_hash, hash) only as they are written, and the chain head
 * moves only after a commit; after a failure it is re-read from the database, so a commit whose
 * answer was lost is neither repeated nor skipped.
 */
@Injectable()
export class AuditWriter implements BeforeApplicationShutdown {
  private readonly logger = new Logger('Audit');
  readonly writerId: string;
  private queue: Pending[] = [];
  private flushing: Promise<void> | undefined;
  private head: { seq: number; hash: string } | undefined;
  private readonly batchSize: Histogram;
  private readonly commitSeconds: Histogram;
  private readonly failures: Counter;
  private healthy = true;
  private probe: NodeJS.Timeout | undefined;

  constructor(
    config: AppConfig,
    private readonly repository: AuditRepository,
    metrics: MetricsService,
  ) {
    this.writerId = config.AUDIT_WRITER_ID ?? `${hostname()}:${process.pid}:${Date.now().toString(36)}`;
    this.maxBatch = config.AUDIT_MAX_BATCH;
    this.batchSize = new Histogram({
      name: 'gateway_audit_commit_rows',
      help: 'Audit rows written per commit (group commit)',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
      registers: [metrics.registry],
    });
    this.commitSeconds = new Histogram({
      name: 'gateway_audit_commit_seconds',
      help: 'Time to write and commit one group of audit rows',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1, 2.5],
      registers: [metrics.registry],
    });
    this.failures = new Counter({
      name: 'gateway_audit_commit_failures_total',
      help: 'Audit commits that failed (their requests were answered 503)',
      registers: [metrics.registry],
    });
  }

  private readonly maxBatch: number;

  /** Whether the last commit succeeded (reported by /health/ready). */
  get isHealthy(): boolean {
    return this.healthy;
  }

  /** Resolves when the row is committed; rejects with AuditUnavailable when it could not be. */
  record(draft: AuditDraft): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ draft, done: (error) => (error ? reject(error) : resolve()) });
      this.flushing ??= this.drain();
    });
  }

  async beforeApplicationShutdown(): Promise<void> {
    clearInterval(this.probe);
    await this.flushing;
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      try {
        await this.commit(batch);
        for (const p of batch) p.done();
      } catch (error) {
        this.head = undefined;
        this.failures.inc();
        if (this.healthy) {
          this.logger.error({ msg: 'audit commit failed; refusing decisions until it succeeds', error: String(error) });
        }
        this.healthy = false;
        this.watchForRecovery();
        const failure = new AuditUnavailable('audit trail unavailable');
        for (const p of batch) p.done(failure);
      }
    }
    this.flushing = undefined;
  }

  /** While commits fail, probe the database each second so readiness recovers without traffic. */
  private watchForRecovery(): void {
    if (this.probe) return;
    this.probe = setInterval(() => {
      this.repository.ping().then(
        () => {
          clearInterval(this.probe);
          this.probe = undefined;
          if (!this.healthy) this.logger.log({ msg: 'audit database reachable again' });
          this.healthy = true;
        },
        () => undefined,
      );
    }, 1000).unref();
  }

  private async commit(batch: Pending[]): Promise<void> {
    this.head ??= (await this.repository.headOf(this.writerId)) ?? { seq: 0, hash: GENESIS_HASH };
    let { seq, hash } = this.head;
    const rows: AuditRow[] = batch.map(({ draft }) => {
      const fields: ChainedFields = { ...draft, writerId: this.writerId, seq: ++seq, prevHash: hash };
      hash = hashOf(fields);
      return { ...fields, hash };
    });
    const stopTimer = this.commitSeconds.startTimer();
    await this.repository.insertAll(rows);
    stopTimer();
    this.head = { seq, hash };
    this.batchSize.observe(rows.length);
    this.healthy = true;
  }
}
