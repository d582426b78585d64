import { hostname } from 'node:os';
import { BeforeApplicationShutdown, Injectable, Logger } from '@nestjs/common';
import { Counter, Histogram } from 'prom-client';
import { MetricsService } from '../common/metrics/metrics.service';
import { AppConfig } from '../config/app-config';
import { ChainedFields, GENESIS_HASH, hashOf } from './audit-chain';
import { AuditRepository, AuditRow } from './audit.repository';

/** An audit row before it is placed in a chain. */
export type AuditDraft = Omit<ChainedFields, 'writerId' | 'seq' | 'prevHash'>;

export class AuditUnavailable extends Error {}

interface Pending {
  draft: AuditDraft;
  done: (error?: Error) => void;
}

/** One hash chain with at most one commit in flight. */
interface Lane {
  writerId: string;
  head: { seq: number; hash: string } | undefined;
  busy: boolean;
}

/**
 * Group commit: `record` resolves once its row is committed. A process writes through a few lanes
 * (AUDIT_LANES), each its own hash chain (`<writer id>/<lane>`) with one commit in flight: rows
 * that arrive while every lane is busy wait together and go in the next single INSERT, so under
 * load many requests share one round trip, and a slow commit does not hold up the next one. A
 * chain's head moves only after its commit; after a failure it is re-read from the database, so a
 * commit whose answer was lost is neither repeated nor skipped.
 */
@Injectable()
export class AuditWriter implements BeforeApplicationShutdown {
  private readonly logger = new Logger('Audit');
  readonly writerId: string;
  private readonly lanes: Lane[];
  private readonly maxBatch: number;
  private queue: Pending[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private readonly batchSize: Histogram;
  private readonly commitSeconds: Histogram;
  private readonly failures: Counter;
  private healthy = true;
  private probe: NodeJS.Timeout | undefined;
  private readonly lingerMs: number;
  private linger: NodeJS.Timeout | undefined;
  /** Requests in flight that have not reached their answer yet: rows that may still join a group. */
  private coming = 0;

  constructor(
    config: AppConfig,
    private readonly repository: AuditRepository,
    metrics: MetricsService,
  ) {
    this.writerId = config.AUDIT_WRITER_ID ?? `${hostname()}:${process.pid}:${Date.now().toString(36)}`;
    this.maxBatch = config.AUDIT_MAX_BATCH;
    this.lingerMs = config.AUDIT_MAX_DELAY_MS;
    this.lanes = Array.from({ length: config.AUDIT_LANES }, (_, i) => ({
      writerId: `${this.writerId}/${i}`,
      head: undefined,
      busy: false,
    }));
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

  /** Whether the database took the last commit, or answers again since (reported by /health/ready). */
  get isHealthy(): boolean {
    return this.healthy;
  }

  /** A request arrived: its row may join the next group (see dispatch). */
  requestStarted(): void {
    this.coming++;
  }

  /** A request reached its answer (audited or not): nothing more to wait for from it. */
  requestAnswered(): void {
    this.coming = Math.max(0, this.coming - 1);
  }

  /** Resolves when the row is committed; rejects with AuditUnavailable when it could not be. */
  record(draft: AuditDraft): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ draft, done: (error) => (error ? reject(error) : resolve()) });
      this.dispatch();
    });
  }

  async beforeApplicationShutdown(): Promise<void> {
    clearInterval(this.probe);
    this.flushNow();
    while (this.inFlight.size > 0) await Promise.all(this.inFlight);
  }

  /**
   * Hands waiting rows to an idle lane. A group is written at once when no other request is still
   * on its way to an answer, or when it is full; otherwise it waits up to AUDIT_MAX_DELAY_MS for
   * those requests to join, since under load one commit per few rows costs more than the wait.
   */
  private dispatch(): void {
    for (const lane of this.lanes) {
      if (this.queue.length === 0) return;
      if (lane.busy) continue;
      const full = this.queue.length >= this.maxBatch || this.coming === 0 || this.lingerMs === 0;
      if (!full) {
        this.linger ??= setTimeout(() => {
          this.linger = undefined;
          this.flushNow();
        }, this.lingerMs);
        return;
      }
      this.start(lane);
    }
  }

  private flushNow(): void {
    for (const lane of this.lanes) {
      if (this.queue.length === 0) return;
      if (!lane.busy) this.start(lane);
    }
  }

  private start(lane: Lane): void {
    if (this.linger) {
      clearTimeout(this.linger);
      this.linger = undefined;
    }
    lane.busy = true;
    const batch = this.queue.splice(0, this.maxBatch);
    const run = this.commit(lane, batch).finally(() => {
      lane.busy = false;
      this.inFlight.delete(run);
      this.dispatch();
    });
    this.inFlight.add(run);
  }

  private async commit(lane: Lane, batch: Pending[]): Promise<void> {
    try {
      lane.head ??= (await this.repository.headOf(lane.writerId)) ?? { seq: 0, hash: GENESIS_HASH };
      let { seq, hash } = lane.head;
      const rows = batch.map(({ draft }) => {
        // The draft is the writer's own: completed in place rather than copied.
        const row = draft as AuditRow;
        row.writerId = lane.writerId;
        row.seq = ++seq;
        row.prevHash = hash;
        row.hash = hash = hashOf(row);
        return row;
      });
      const stopTimer = this.commitSeconds.startTimer();
      await this.repository.insertAll(rows);
      stopTimer();
      lane.head = { seq, hash };
      this.batchSize.observe(rows.length);
      this.healthy = true;
      for (const p of batch) p.done();
    } catch (error) {
      lane.head = undefined;
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
}
