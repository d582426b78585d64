import { hostname } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import {
  BeforeApplicationShutdown,
  Inject,
  Injectable,
  Logger,
  OnApplicationShutdown,
  OnModuleInit,
} from '@nestjs/common';
import { Counter, Histogram } from 'prom-client';
import { DataSource } from 'typeorm';
import { AppError } from '../common/errors/app-error';
import { MetricsService } from '../common/metrics/metrics.service';
import { AppConfig } from '../config/app-config';
import { clientConfigOf } from '../database/connection-config';
import { EMBEDDED_POSTGRES, type EmbeddedPostgres } from '../database/embedded-postgres';
import { errorCodeOf, STORAGE_FAULT_WORDS, storageFaultOf } from '../database/storage-unavailable';
import { AuditAnchors } from './audit-anchor.service';
import { type ChainedFields, rowHashKey } from './audit-chain';
import type { AuditCommitReply, AuditCommitRequest, ChainHead } from './audit-commit';
import type { EmbeddedCommitData } from './audit-commit.embedded';
import { WRITER_ID_CLAIMED } from './audit-writer-claim';
import { AuditRepository } from './audit.repository';
import { auditSecret } from './input-digest';
import { storableDraft } from './storable';
import type { AuditWorkerData } from './audit-writer.worker';

/** An audit row before it is placed in a chain. */
export type AuditDraft = Omit<ChainedFields, 'writerId' | 'seq' | 'prevHash' | 'hashVersion'>;

/** Why rows cannot be committed: `reason`, when known, is fit for an answer ("audit database out of disk space"). */
export class AuditUnavailable extends Error {
  constructor(
    message: string,
    readonly reason?: string,
  ) {
    super(message);
  }

  /** The 503 AUDIT_UNAVAILABLE answered for it: `what` cannot be written (why, when known), then `more`. */
  answer(what: string, more = ''): AppError {
    const why = this.reason === undefined ? '' : ` (${this.reason})`;
    return new AppError('AUDIT_UNAVAILABLE', `${what} cannot be written${why}${more}`, { retryAfterSeconds: 1 });
  }
}

/** A failed commit as its thread told it: the error's message and code (see AuditCommitReply). */
interface CommitFailure {
  message: string;
  code?: string;
}

/** A request's answer from the commit channel: a claim held, or a group committed. */
type Answer = Extract<AuditCommitReply, { type: 'claimed' | 'committed' }>;

interface Pending {
  draft: AuditDraft;
  done: (error?: Error) => void;
}

/** Where groups are written: the commit thread (PostgreSQL) or embedded PGlite's own thread. */
interface CommitChannel {
  post(request: AuditCommitRequest): void;
  /** Has the other end release what it holds, then closes the channel. */
  close(): Promise<void>;
}

/** One hash chain with at most one commit in flight. */
interface Lane {
  writerId: string;
  busy: boolean;
}

/**
 * Group commit: `record` resolves once its row is committed. A process writes through a few lanes
 * (AUDIT_LANES), each its own hash chain (`<writer id>/<lane>`) with one commit in flight: rows
 * that arrive while every lane is busy wait together and go in the next single INSERT, so under
 * load many requests share one round trip, and a slow commit does not hold up the next one. The
 * commits themselves (chaining, hashing, the INSERT: audit-commit.ts) run off the event loop: on
 * embedded PGlite in the database's own thread (audit-commit.embedded.ts), on a PostgreSQL server
 * in a commit thread with its own pool (audit-writer.worker.ts). Chain heads move only after a
 * commit; after a failure a head is re-read from the database, so a commit whose answer was lost is
 * neither repeated nor skipped.
 */
@Injectable()
export class AuditWriter implements OnModuleInit, BeforeApplicationShutdown, OnApplicationShutdown {
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
  /** Why the last commit failed, in words for /health/ready and the 503 (undefined when the cause is unknown). */
  private failureReason: string | undefined;
  private probe: NodeJS.Timeout | undefined;
  /** The recovery probe's write was refused once (logged): it falls back to SELECT 1. */
  private probeRefused = false;
  private readonly lingerMs: number;
  private readonly commitTimeoutMs: number;
  private linger: NodeJS.Timeout | undefined;
  /** Requests in flight that have not reached their answer yet: rows that may still join a group. */
  private coming = 0;
  private channel: CommitChannel | undefined;
  /** Open requests (claim, commits) by id: each settled with its answer, or the failure. */
  private readonly commits = new Map<number, (outcome: Answer | CommitFailure) => void>();
  private commitIds = 0;
  private readonly enabled: boolean;
  private stopped = false;
  /** Each chain's last committed row, as its commit's answer told: what the anchors record. */
  private readonly committedHeads = new Map<string, ChainHead>();
  /** The key rows are hashed under (rowHashKey), handed to the commit thread; a secret, never logged. */
  private readonly rowKey: Buffer;

  constructor(
    config: AppConfig,
    private readonly repository: AuditRepository,
    metrics: MetricsService,
    private readonly dataSource: DataSource,
    @Inject(EMBEDDED_POSTGRES) private readonly embedded: EmbeddedPostgres | null,
    private readonly anchors: AuditAnchors,
  ) {
    this.enabled = config.AUDIT_ENABLED;
    this.rowKey = rowHashKey(auditSecret(config));
    this.writerId = config.AUDIT_WRITER_ID ?? `${hostname()}:${process.pid}:${Date.now().toString(36)}`;
    this.maxBatch = config.AUDIT_MAX_BATCH;
    this.lingerMs = config.AUDIT_MAX_DELAY_MS;
    this.commitTimeoutMs = config.AUDIT_COMMIT_TIMEOUT_MS;
    this.lanes = Array.from({ length: config.AUDIT_LANES }, (_, i) => ({
      writerId: `${this.writerId}/${i}`,
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

  /**
   * Opens the commit channel at boot, so that the first audited answer does not wait for it, and
   * starts anchoring the chains' heads outside the database.
   */
  async onModuleInit(): Promise<void> {
    if (!this.enabled) return;
    await this.claimWriterId();
    await this.anchors.start(() => this.committedHeads);
  }

  /**
   * Claims the writer id before anything is written (audit-writer-claim.ts): a second gateway given the
   * same AUDIT_WRITER_ID on one PostgreSQL stops at boot, saying so.
   */
  private async claimWriterId(): Promise<void> {
    try {
      await this.ask((id) => ({ type: 'claim', id }));
    } catch (error) {
      this.stopped = true;
      const channel = this.channel;
      this.channel = undefined;
      await channel?.close();
      const reason = error instanceof Error ? error.message : String(error);
      if (errorCodeOf(error) === WRITER_ID_CLAIMED) throw new Error(reason, { cause: error });
      throw new Error(`cannot claim audit writer id "${this.writerId}": ${reason}`, { cause: error });
    }
  }

  /** Whether the database took the last commit, or answers again since (reported by /health/ready). */
  get isHealthy(): boolean {
    return this.healthy;
  }

  /** Why commits fail, for /health/ready: the database's own fault when known, never a path or SQL. */
  get unhealthyDetail(): string {
    return this.failureReason ?? 'audit commits failing (the log has the cause)';
  }

  /** A request arrived: its row may join the next group (see dispatch). */
  requestStarted(): void {
    this.coming++;
  }

  /** A request reached its answer (audited or not): nothing more to wait for from it. */
  requestAnswered(): void {
    this.coming = Math.max(0, this.coming - 1);
  }

  /**
   * Resolves when the row is committed; rejects with AuditUnavailable when it could not be. Its
   * strings are first made storable (storableDraft), so that no row can fail the group it joins.
   */
  record(draft: AuditDraft): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ draft: storableDraft(draft), done: (error) => (error ? reject(error) : resolve()) });
      this.dispatch();
    });
  }

  /** Commits what is waiting before the HTTP server closes. */
  async beforeApplicationShutdown(): Promise<void> {
    clearInterval(this.probe);
    await this.drain();
  }

  /**
   * Answers still in flight while the HTTP server closed were recorded after beforeApplicationShutdown:
   * commits them too, anchors the final heads, then closes the commit channel, which no later row can
   * open again.
   */
  async onApplicationShutdown(): Promise<void> {
    await this.drain();
    this.stopped = true;
    await this.anchors.stop();
    const channel = this.channel;
    this.channel = undefined;
    await channel?.close();
  }

  private async drain(): Promise<void> {
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
      const stopTimer = this.commitSeconds.startTimer();
      this.committedHeads.set(lane.writerId, await this.send(lane.writerId, batch));
      stopTimer();
      this.batchSize.observe(batch.length);
      this.healthy = true;
      for (const p of batch) p.done();
    } catch (error) {
      this.failures.inc();
      if (this.healthy) {
        this.logger.error({
          msg: 'audit commit failed; refusing decisions until it succeeds',
          error: String(error),
          code: errorCodeOf(error),
        });
      }
      this.healthy = false;
      this.failureReason = auditFailureReason(error);
      this.watchForRecovery();
      const failure = new AuditUnavailable('audit trail unavailable', this.failureReason);
      for (const p of batch) p.done(failure);
    }
  }

  /**
   * Has the commit channel write one group at the end of a chain; resolves with the chain's new head,
   * rejects when it could not.
   */
  private async send(writerId: string, batch: Pending[]): Promise<ChainHead> {
    const answer = await this.ask((id) => ({ type: 'commit', id, writerId, drafts: batch.map((p) => p.draft) }));
    if (answer.type !== 'committed') throw new Error(`a commit was answered ${answer.type}`);
    return { seq: answer.seq, hash: answer.hash };
  }

  /** Posts one request to the commit channel; resolves with its answer, rejects with its failure. */
  private ask(request: (id: number) => AuditCommitRequest): Promise<Answer> {
    const channel = this.commitChannel();
    const id = ++this.commitIds;
    return new Promise<Answer>((resolve, reject) => {
      // A database that stops answering (PGlite after a PANIC hangs every later query) must not hold
      // the requests waiting on it: they are refused, and a late answer is ignored.
      const timer = setTimeout(() => {
        this.commits.delete(id);
        reject(new Error(`the audit database did not answer a commit within ${this.commitTimeoutMs} ms`));
      }, this.commitTimeoutMs);
      this.commits.set(id, (outcome) => {
        clearTimeout(timer);
        if ('type' in outcome) resolve(outcome);
        else reject(Object.assign(new Error(outcome.message), { code: outcome.code }));
      });
      channel.post(request(id));
    });
  }

  /**
   * The commit channel, opened at boot and again after its other end died (its open commits
   * failed), until shutdown: into embedded PGlite's thread, or to a commit thread of our own.
   */
  private commitChannel(): CommitChannel {
    if (this.channel) return this.channel;
    if (this.stopped) throw new AuditUnavailable('the gateway is shutting down');
    let closed: (() => void) | undefined;
    const onReply = (reply: AuditCommitReply): void => {
      if (reply.type === 'closed') {
        closed?.();
        return;
      }
      if (reply.type === 'notice') {
        this.logger.warn({ msg: reply.message });
        return;
      }
      const settle = this.commits.get(reply.id);
      this.commits.delete(reply.id);
      settle?.(reply.type === 'failed' ? { message: reply.message, code: reply.code } : reply);
    };
    const died = (reason: string): void => {
      closed?.();
      if (this.channel !== channel) return;
      this.channel = undefined;
      for (const settle of this.commits.values()) settle({ message: reason });
      this.commits.clear();
    };
    const closing = (end: () => void): Promise<void> =>
      new Promise<void>((ok) => {
        closed = ok;
        end();
      });
    let channel: CommitChannel;
    if (this.embedded) {
      const port = this.embedded.attach(join(__dirname, 'audit-commit.embedded.js'), {
        rowKey: this.rowKey,
      } satisfies EmbeddedCommitData);
      port.on('message', onReply);
      port.once('close', () => died('the embedded database stopped'));
      channel = {
        post: (request) => port.postMessage(request),
        close: async () => {
          await closing(() => port.postMessage({ type: 'close' } satisfies AuditCommitRequest));
          port.close();
        },
      };
    } else {
      // A PostgreSQL server: a commit thread with a pool of one connection per lane.
      const workerData: AuditWorkerData = {
        pool: { ...clientConfigOf(this.dataSource.options, 'audit'), max: this.lanes.length },
        writerId: this.writerId,
        rowKey: this.rowKey,
      };
      const worker = new Worker(join(__dirname, 'audit-writer.worker.js'), { workerData });
      worker.on('message', onReply);
      worker.on('error', (error) => died(`audit commit thread failed: ${error.message}`));
      worker.on('exit', (code) => died(`audit commit thread exited with code ${code}`));
      channel = {
        post: (request) => worker.postMessage(request),
        close: async () => {
          await closing(() => worker.postMessage({ type: 'close' } satisfies AuditCommitRequest));
          await worker.terminate();
        },
      };
    }
    this.channel = channel;
    return channel;
  }

  /**
   * While commits fail, probe the database each second so readiness recovers without traffic. The probe
   * needs what a commit needs, a new page where audit rows go (AuditRepository.probeWrite): a full disk
   * answers SELECT 1 but not that, so readiness stays not ready until space returns. One probe at a time.
   */
  private watchForRecovery(): void {
    if (this.probe) return;
    let probing = false;
    this.probe = setInterval(() => {
      if (probing) return;
      probing = true;
      this.probeOnce()
        .then(
          () => {
            clearInterval(this.probe);
            this.probe = undefined;
            if (!this.healthy) this.logger.log({ msg: 'audit database answers again', was: this.unhealthyDetail });
            this.healthy = true;
          },
          (error: unknown) => {
            // The probe's own fault is the one readiness tells now (a disk still full, a database restarting).
            this.failureReason = auditFailureReason(error) ?? this.failureReason;
          },
        )
        .finally(() => (probing = false));
    }, 1000).unref();
  }

  private async probeOnce(): Promise<void> {
    try {
      await this.repository.probeWrite();
    } catch (error) {
      if (storageFaultOf(error) !== undefined) throw error;
      // Refused for another reason (a role that may not create a table): whether the database answers decides.
      if (!this.probeRefused) {
        this.probeRefused = true;
        this.logger.warn({
          msg: 'audit recovery probe refused; readiness follows SELECT 1 alone, which a full disk answers',
          error: String(error),
          code: errorCodeOf(error),
        });
      }
      await this.repository.ping();
    }
  }
}

/**
 * A failed commit's cause in words, from its error's code (the database's SQLSTATE or the system's errno,
 * carried across the thread) or message: a full disk is no unreachable database, and the operator acts
 * on the one they are told. Undefined when neither tells (a commit thread that died, a refused statement).
 */
export function auditFailureReason(error: unknown): string | undefined {
  if (errorCodeOf(error) === WRITER_ID_CLAIMED) return 'audit writer id in use by another running gateway';
  const fault = storageFaultOf(error);
  if (fault === undefined) return undefined;
  return `audit database ${fault === 'outage' ? 'unreachable' : STORAGE_FAULT_WORDS[fault]}`;
}
