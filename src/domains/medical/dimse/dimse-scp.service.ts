import { randomUUID } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { BeforeApplicationShutdown, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { log as dcmjsLog } from 'dcmjs';
import { Implementation, log as dimseLog } from 'dcmjs-dimse';
import { Counter, Gauge } from 'prom-client';
import type { AuditOutcome } from '../../../audit/audit-event.entity';
import { AuditAggregates } from '../../../audit/audit-aggregates';
import { AuditDraft, AuditWriter } from '../../../audit/audit-writer.service';
import { RefusalLimiter } from '../../../auth/refusal-limiter';
import { outcomeOf } from '../../../audit/audit.hook';
import { AppError, type ErrorCode, httpStatusOf } from '../../../common/errors/app-error';
import { UploadBudget } from '../../../common/http/body-budget';
import { MetricsService } from '../../../common/metrics/metrics.service';
import { AppConfig } from '../../../config/app-config';
import { DicomRejected, failureStatusOf, isUnreadable, runtimeFailureStatusOf } from '../dicom/dicom-rejected';
import type { InstanceAnalysis } from '../lesion-detection.service';
import { MedicalIntakeService } from '../medical-intake.service';
import { DimseConnection, DimseHandler, ReceivedInstance, StoreAnswer } from './dimse-connection.scp';
import { cStoreTo, datasetOfPart10 } from './dimse-forward.util';
import {
  AeRules,
  AssociationRefusal,
  errorComment,
  ForwardTarget,
  judgeAeTitles,
  parseAeList,
  parseForwardTarget,
  storeMismatch,
} from './dimse-negotiation.util';
import { DropReason, ForwardRetryQueue, PendingForward } from './forward-retry.util';
import { IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, part10File } from './part10-file.util';

/** DIMSE statuses the SCP answers with besides the refusal reasons' own (PS3.4 Table GG.4-1 / B.2-1). */
const SUCCESS = 0x0000;
const OUT_OF_RESOURCES = 0xa700;
const PROCESSING_FAILURE = 0x0110;
const SOP_CLASS_NOT_SUPPORTED = 0x0122;
const DATASET_MISMATCH = 0xa900;
const CANNOT_UNDERSTAND = 0xc000;

/** Associations open at once; past it a caller is refused as transient (local limit exceeded) and retries. */
const MAX_ASSOCIATIONS = 32;

/**
 * Connections still to be associated (each for at most ARTIM) do not count toward MAX_ASSOCIATIONS; past
 * this many, the oldest of them is closed as another comes. A caller sends its A-ASSOCIATE-RQ within
 * milliseconds, so only a flood of that many new connections in that time could push it out.
 */
const MAX_AWAITING_CONNECTIONS = 64;

/** Forwarding an SR: each step (connect, associate, PDU), and the whole exchange. */
const FORWARD_TIMEOUTS = { stepMs: 10_000, totalMs: 60_000 };

/** A forward's SR as its own store's audit row names it: who sent the instance, and the instance's digest. */
interface ForwardOrigin {
  instance: string;
  caller: string;
  peer: string;
  inputDigest: string | null;
}

/** A C-STORE answer that is not stored: out of resources (0xA7xx) may pass, any other failure will not. */
class ForwardRefused extends Error {
  constructor(readonly status: number) {
    super(`C-STORE status 0x${status.toString(16).padStart(4, '0')}`);
  }

  get permanent(): boolean {
    return (this.status & 0xff00) !== 0xa700;
  }
}

/** What DimseScpService.record writes into an audit row. */
interface AuditRowFields {
  /** The store's, shared with its log line and ErrorComment; a new one for rows of no store. */
  requestId?: string;
  actor: string;
  action: string;
  model: { name: string; version: string } | undefined;
  peer: string;
  inputDigest: string | null;
  output: Record<string, unknown>;
  outcome: AuditOutcome;
  statusCode: number;
  startedAt: number;
}

/** The audit row's view of a decision, and the C-STORE answer it goes with. */
interface Decision {
  answer: StoreAnswer;
  outcome: AuditOutcome;
  /** The HTTP status the same decision gets on the single-instance route, so the trail reads alike. */
  statusCode: number;
  output: Record<string, unknown>;
  analysis?: InstanceAnalysis;
}

/**
 * The DIMSE way in: a C-STORE SCP (dcmjs-dimse) on MEDICAL_DIMSE_PORT, listening once the models are
 * loaded. Each instance received is parsed, analysed and kept like an HTTP upload; its audit row is
 * committed before the C-STORE response leaves. With MEDICAL_DIMSE_FORWARD the SR of each analysed
 * instance is then sent on by C-STORE; a failed forward is logged, counted and retried from memory with
 * growing delays (MEDICAL_DIMSE_FORWARD_RETRIES), the store still stands; an SR given up on is audited.
 */
@Injectable()
export class DimseScpService implements DimseHandler, OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger('MedicalDimse');
  readonly maxDatasetBytes: number;
  private readonly rules: AeRules;
  private readonly forwardTarget?: ForwardTarget;
  private server?: Server;
  private readonly connections = new Set<DimseConnection>();
  private readonly forwards = new Set<Promise<void>>();
  private closing = false;
  private readonly refusals: RefusalLimiter;
  private readonly stores: Counter<'outcome'>;
  private readonly forwarded: Counter<'outcome'>;
  private readonly retries: ForwardRetryQueue<ForwardOrigin>;

  constructor(
    private readonly config: AppConfig,
    private readonly intake: MedicalIntakeService,
    private readonly audit: AuditWriter,
    private readonly aggregates: AuditAggregates,
    readonly uploads: UploadBudget,
    metrics: MetricsService,
  ) {
    // Refused associations, as HTTP requests without a valid token, have a budget per peer address; past it,
    // each is still refused, and counted into one summary row per window rather than logged and audited.
    this.refusals = new RefusalLimiter(config.AUTH_REFUSAL_LIMIT, config.AUTH_REFUSAL_WINDOW_MS);
    // The library logs every PDU at trace level by default, to the console; its errors are reported here instead.
    dimseLog.setLevel('silent', false);
    // It decodes commands and data sets with dcmjs, whose warnings (a stack trace for a garbled command)
    // go to stderr outside the JSON log and may quote element values: patient data. Mute them for good.
    dcmjsLog.setLevel('silent', false);
    dcmjsLog.getLogger('validation.dcmjs').setLevel('silent', false);
    this.maxDatasetBytes = config.MEDICAL_MAX_BODY_BYTES;
    this.rules = {
      aeTitle: config.MEDICAL_DIMSE_AE_TITLE,
      allowedCallers: parseAeList(config.MEDICAL_DIMSE_ALLOWED_AETS),
    };
    this.forwardTarget = parseForwardTarget(config.MEDICAL_DIMSE_FORWARD);
    this.stores = new Counter({
      name: 'gateway_dimse_stores_total',
      help: 'DIMSE C-STORE requests by outcome (ok, invalid, error, unaudited)',
      labelNames: ['outcome'],
      registers: [metrics.registry],
    });
    this.forwarded = new Counter({
      name: 'gateway_dimse_sr_forwards_total',
      help: 'SR forward attempts by C-STORE to MEDICAL_DIMSE_FORWARD by outcome (ok, failed), and SRs given up on (dropped)',
      labelNames: ['outcome'],
      registers: [metrics.registry],
    });
    this.retries = new ForwardRetryQueue<ForwardOrigin>(
      {
        retries: config.MEDICAL_DIMSE_FORWARD_RETRIES,
        firstDelayMs: config.MEDICAL_DIMSE_FORWARD_RETRY_DELAY_MS,
        maxBytes: config.MEDICAL_DIMSE_FORWARD_QUEUE_BYTES,
      },
      {
        send: (sr) => this.sendSr(sr),
        permanent: (error) => error instanceof ForwardRefused && error.permanent,
        delivered: (entry) => this.retried(entry),
        failed: (entry, error) => this.retryLater(entry, error),
        dropped: (entry, reason, error) => this.dropForward(entry, reason, error),
      },
    );
    const retries = this.retries;
    new Gauge({
      name: 'gateway_dimse_sr_forwards_waiting',
      help: 'SRs whose forward failed, held in memory for a retry',
      registers: [metrics.registry],
      collect() {
        this.set(retries.size);
      },
    });
  }

  async onApplicationBootstrap(): Promise<void> {
    const port = this.config.MEDICAL_DIMSE_PORT;
    if (port === undefined) return;
    Implementation.setImplementationClassUid(IMPLEMENTATION_CLASS_UID);
    Implementation.setImplementationVersion(IMPLEMENTATION_VERSION_NAME);
    // Our own listener rather than the library's Server: it binds HOST, and closes without cutting answers short.
    const server = createServer((socket) => this.connect(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, this.config.HOST, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (error) => this.logger.error({ msg: 'DIMSE listener error', error: String(error) }));
    this.server = server;
    const forward = this.forwardTarget;
    this.logger.log({
      msg: 'DIMSE C-STORE SCP listening',
      host: this.config.HOST,
      port,
      aeTitle: this.rules.aeTitle,
      allowedCallers: this.rules.allowedCallers ? [...this.rules.allowedCallers] : 'any',
      ...(forward ? { forwardTo: `${forward.aeTitle}@${forward.host}:${forward.port}` } : {}),
    });
  }

  /** Stops accepting, lets C-STOREs in progress answer (their audit rows and the models are still up), then closes. */
  async beforeApplicationShutdown(): Promise<void> {
    if (!this.server) return;
    const server = this.server;
    this.server = undefined;
    this.closing = true;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    const grace = sleep(this.config.SHUTDOWN_GRACE_MS, undefined, { ref: false });
    await Promise.race([Promise.all([...this.connections].map((c) => c.settled())), grace]);
    await Promise.race([Promise.allSettled([...this.forwards]), grace]);
    await Promise.race([this.retries.stop(), grace]);
    for (const connection of this.connections) connection.end();
    await Promise.race([closed, grace]);
  }

  async admit(
    called: string,
    calling: string,
    peer: string,
    protocol?: AssociationRefusal,
  ): Promise<AssociationRefusal | undefined> {
    const refusal =
      protocol ??
      (this.associations() >= MAX_ASSOCIATIONS ? 'TOO_MANY_ASSOCIATIONS' : judgeAeTitles(called, calling, this.rules));
    if (refusal) {
      // Recorded like an HTTP 403 (429 when full, 400 for a request its protocol fields refuse); the refusal
      // goes out whether or not the row could be written.
      const row: AuditRowFields = {
        actor: calling,
        action: 'medical.dimse-associate',
        model: undefined,
        peer,
        inputDigest: null,
        output: { reason: refusal, calledAeTitle: called },
        outcome: protocol ? 'invalid' : 'denied',
        statusCode: refusal === 'TOO_MANY_ASSOCIATIONS' ? 429 : protocol ? 400 : 403,
        startedAt: performance.now(),
      };
      const limited = this.refusals.refused(peer);
      if (limited) {
        if (limited.first) {
          this.logger.warn({
            msg: 'DIMSE association refusals past the peer budget: still refused, summed up in the audit trail and no longer logged',
            peer: limited.key,
            limit: limited.limit,
            untilSeconds: limited.retryAfterSeconds,
          });
        }
        if (this.config.AUDIT_ENABLED) {
          this.aggregates.count(`address ${limited.key}`, { ...this.draftOf(row), clientAddress: limited.key });
        }
        return refusal;
      }
      this.logger.warn({
        msg: 'DIMSE association refused',
        reason: refusal,
        calledAeTitle: called,
        callingAeTitle: calling,
        peer,
      });
      await this.record(row).catch(() => undefined);
    }
    return refusal;
  }

  async store(instance: ReceivedInstance): Promise<StoreAnswer> {
    // Nothing is decided while shutting down (the models drain next): the caller sends again later.
    if (this.closing) return { status: OUT_OF_RESOURCES, comment: 'gateway shutting down; send it again later' };
    // The store's request id, as an HTTP request has one: its audit row's, and the reference a failure's log line
    // and ErrorComment share.
    const requestId = randomUUID();
    let decision: Decision;
    // Hashed on the thread pool while the instance is analysed (digestAsync never rejects).
    let digesting: Promise<string> | undefined;
    try {
      const file =
        instance.dataset &&
        part10File(instance.dataset, {
          sopClassUid: instance.sopClassUid,
          sopInstanceUid: instance.sopInstanceUid,
          transferSyntaxUid: instance.transferSyntaxUid,
          sourceAeTitle: instance.callingAeTitle,
        });
      digesting = file ? this.intake.digestAsync(file) : undefined;
      const refused = refusedUnread(instance);
      decision = refused || !file ? (refused ?? tooLarge()) : await this.decide(file, instance);
    } catch (error) {
      decision = this.failed(error, requestId);
    }
    const inputDigest = (await digesting) ?? null;
    try {
      await this.record({
        requestId,
        actor: instance.callingAeTitle,
        action: 'medical.dimse-store',
        model: this.modelRef(),
        peer: instance.peer,
        inputDigest,
        output: decision.output,
        outcome: decision.outcome,
        statusCode: decision.statusCode,
        startedAt: instance.startedAt,
      });
    } catch {
      // No answer leaves without its audit row, as over HTTP. Its findings may be kept already: sent again once the
      // trail is back, the instance replaces them.
      this.stores.inc({ outcome: 'unaudited' });
      return { status: OUT_OF_RESOURCES, comment: 'no answer leaves without its audit row: send the request again' };
    }
    this.stores.inc({ outcome: decision.outcome });
    const analysis = decision.analysis;
    if (analysis && this.forwardTarget) {
      this.track(
        this.forward(analysis, { caller: instance.callingAeTitle, peer: instance.peer, inputDigest, instance: '' }),
      );
    }
    return decision.answer;
  }

  private connect(socket: Socket): void {
    // HTTP_REQUEST_TIMEOUT_MS as for an HTTP request: what a peer sends (a PDU, a message with its data set) must be
    // whole that long after its first byte, however it trickles; a long analysis, with nothing arriving, is not cut off.
    const timeout = this.config.HTTP_REQUEST_TIMEOUT_MS;
    const connection = new DimseConnection(
      socket,
      { artimMs: this.config.MEDICAL_DIMSE_ARTIM_TIMEOUT_MS, receiveMs: timeout, idleMs: timeout },
      this,
    );
    const awaiting = [...this.connections].filter((c) => !c.associated);
    if (awaiting.length >= MAX_AWAITING_CONNECTIONS) {
      const oldest = awaiting[0];
      this.connectionError(oldest.peer, `${MAX_AWAITING_CONNECTIONS} connections await association: the oldest closed`);
      this.connections.delete(oldest);
      oldest.end();
    }
    this.connections.add(connection);
    connection.on('close', () => this.connections.delete(connection));
  }

  private associations(): number {
    let count = 0;
    for (const connection of this.connections) if (connection.associated) count++;
    return count;
  }

  connectionError(peer: string, message: string): void {
    this.logger.warn({ msg: 'DIMSE connection error', peer, error: message });
  }

  private async decide(file: Buffer, instance: ReceivedInstance): Promise<Decision> {
    try {
      const image = this.intake.parse(file);
      // Answering for the instance the request named, the data set must be that instance.
      const mismatch = storeMismatch(instance, image);
      if (mismatch) return sopMismatch(mismatch);
      // DIMSE carries no token, hence no tenant: kept as a token without one would keep them.
      const analysis = await this.intake.analyseAndKeep(image, '');
      return {
        answer: { status: SUCCESS },
        outcome: 'ok',
        statusCode: 200,
        output: this.intake.auditSummary(analysis.findings),
        analysis,
      };
    } catch (error) {
      if (!(error instanceof DicomRejected)) throw error;
      return {
        answer: { status: failureStatusOf(error.reason), comment: errorComment(`${error.reason}: ${error.detail}`) },
        outcome: 'invalid',
        statusCode: isUnreadable(error.reason) ? 400 : 422,
        output: { reason: error.reason },
      };
    }
  }

  /** A runtime refusal (queue full, deadline, no model) or a bug: a failure status, never an exception to the library. */
  private failed(error: unknown, requestId: string): Decision {
    if (error instanceof AppError) {
      const { status } = httpStatusOf(error.code);
      // Given on purpose: its code says enough, no stack (as the problem filter logs a 5xx AppError).
      if (status >= 500) this.logger.warn({ msg: 'DIMSE C-STORE failed', requestId, code: error.code });
      return {
        answer: {
          status: runtimeFailureStatusOf(error),
          // The code first, as a refusal's reason leads its comment: it survives the cut to 64 characters.
          comment: errorComment(`${error.code}: ${error.detail}`),
        },
        outcome: outcomeOf(status),
        statusCode: status,
        output: { reason: error.code },
      };
    }
    // A bug: logged with its stack under the store's request id, as the problem filter logs a 500; the PACS gets
    // that id to quote (the ErrorComment's 64 characters hold it whole), and nothing of the error itself.
    // The code an HTTP 500 is answered and audited with (ErrorCode), so the trail names a bug one way whatever way in.
    const code: ErrorCode = 'INTERNAL';
    this.logger.error({
      msg: 'DIMSE C-STORE failed',
      requestId,
      code,
      error: error instanceof Error ? error.stack : String(error),
    });
    return {
      answer: { status: PROCESSING_FAILURE, comment: errorComment(`gateway internal error; ref ${requestId}`) },
      outcome: 'error',
      statusCode: 500,
      output: { reason: code },
    };
  }

  /** Resolves once the row is committed; rejects with AuditUnavailable when it cannot be. */
  private async record(row: AuditRowFields): Promise<void> {
    if (!this.config.AUDIT_ENABLED) return;
    await this.audit.record(this.draftOf(row));
  }

  private draftOf(row: AuditRowFields): AuditDraft {
    return {
      occurredAt: new Date(),
      actor: `dimse:${row.actor}`.slice(0, 256),
      roles: [],
      tenant: null,
      action: row.action,
      modelName: row.model?.name ?? null,
      modelVersion: row.model?.version ?? null,
      requestId: row.requestId ?? randomUUID(),
      clientAddress: row.peer.slice(0, 64),
      inputDigest: row.inputDigest,
      outputSummary: row.output,
      outcome: row.outcome,
      statusCode: row.statusCode,
      latencyMs: Math.round((performance.now() - row.startedAt) * 1000) / 1000,
    };
  }

  /** The serving model, or none when the gateway runs without it (the row's model columns stay empty). */
  private modelRef(): { name: string; version: string } | undefined {
    try {
      return this.intake.modelRef();
    } catch {
      return undefined;
    }
  }

  private async forward(analysis: InstanceAnalysis, origin: ForwardOrigin): Promise<void> {
    await nextTurn(); // the C-STORE response goes out first
    origin.instance = this.intake.protector.pseudonymUid(analysis.image.sopInstanceUID);
    let sr: Buffer | undefined;
    try {
      sr = this.intake.structuredReport(analysis);
      await this.sendSr(sr);
    } catch (error) {
      if (!sr) this.dropForward({ sr: Buffer.alloc(0), meta: origin, attempts: 0, dueAt: 0 }, 'UNENCODABLE', error);
      else this.retries.add(sr, origin, error);
    }
  }

  /** One attempt, counted: a C-STORE of the SR to MEDICAL_DIMSE_FORWARD; rejects unless it was stored (0xBxxx: with a warning). */
  private async sendSr(sr: Buffer): Promise<void> {
    try {
      if (!this.forwardTarget) throw new Error('no forward destination');
      const status = await cStoreTo(datasetOfPart10(sr), this.forwardTarget, this.rules.aeTitle, FORWARD_TIMEOUTS);
      if (status !== SUCCESS && (status & 0xf000) !== 0xb000) throw new ForwardRefused(status);
    } catch (error) {
      this.forwarded.inc({ outcome: 'failed' });
      throw error;
    }
    this.forwarded.inc({ outcome: 'ok' });
  }

  private destination(): string {
    const target = this.forwardTarget;
    return target ? `${target.aeTitle}@${target.host}:${target.port}` : '';
  }

  private retryLater(entry: PendingForward<ForwardOrigin>, error: unknown): void {
    this.logger.warn({
      msg: 'SR forward failed; it is held in memory and sent again later (the instance stays analysed and kept)',
      instance: entry.meta.instance,
      to: this.destination(),
      attempts: entry.attempts,
      retryInMs: entry.dueAt - Date.now(),
      error: messageOf(error),
    });
  }

  private retried(entry: PendingForward<ForwardOrigin>): void {
    this.logger.log({
      msg: 'SR forwarded on a retry',
      instance: entry.meta.instance,
      to: this.destination(),
      attempts: entry.attempts,
    });
  }

  /** Given up on: logged, counted and audited (against the store that made it); the findings stay in the database. */
  private dropForward(entry: PendingForward<ForwardOrigin>, reason: DropReason | 'UNENCODABLE', error: unknown): void {
    this.forwarded.inc({ outcome: 'dropped' });
    this.logger.error({
      msg: 'SR forward given up; the instance stays analysed and kept',
      reason,
      instance: entry.meta.instance,
      to: this.destination(),
      attempts: entry.attempts,
      ...(error === undefined ? {} : { error: messageOf(error) }),
    });
    void this.record({
      actor: entry.meta.caller,
      action: 'medical.dimse-forward',
      model: this.modelRef(),
      peer: entry.meta.peer,
      inputDigest: entry.meta.inputDigest,
      output: { reason, to: this.destination(), attempts: entry.attempts },
      outcome: 'error',
      statusCode: 502,
      startedAt: performance.now(),
    }).catch(() => undefined);
  }

  private track(task: Promise<void>): void {
    this.forwards.add(task);
    void task.finally(() => this.forwards.delete(task));
  }
}

/** An error's message for a log line: the steps of a forward name no patient data. */
function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * A C-STORE refused for what it says before its data set is read: none came (dropped, or none declared), or
 * it came on a presentation context negotiated for another SOP class than the one it names.
 */
function refusedUnread(instance: ReceivedInstance): Decision | undefined {
  switch (instance.dropped) {
    case 'UPLOADS_BUSY':
      return uploadsBusy();
    case 'BODY_TOO_LARGE':
      return tooLarge();
    case 'NO_DATASET':
      return noDataset();
    case undefined:
      break;
  }
  if (instance.abstractSyntaxUid !== instance.sopClassUid) return notNegotiated();
  return undefined;
}

/** PS3.7 9.1.1: a C-STORE-RQ carries a data set; one declaring none (0000,0800 0101H) is not understood. */
function noDataset(): Decision {
  return {
    answer: { status: CANNOT_UNDERSTAND, comment: 'NO_DATASET: a C-STORE-RQ must carry a data set' },
    outcome: 'invalid',
    statusCode: 400,
    output: { reason: 'NO_DATASET' },
  };
}

/**
 * Its Affected SOP Class UID is not the abstract syntax of its presentation context (PS3.7 9.1.1): that SOP
 * class was not negotiated on it. Refused as DCMTK's storescp refuses it, SOP class not supported.
 */
function notNegotiated(): Decision {
  return {
    answer: { status: SOP_CLASS_NOT_SUPPORTED, comment: 'SOP_CLASS_NOT_NEGOTIATED: not on this presentation context' },
    outcome: 'invalid',
    statusCode: 400,
    output: { reason: 'SOP_CLASS_NOT_NEGOTIATED' },
  };
}

/** The data set is not the instance its request named (PS3.4 B.2.3: 0xA900); the comment names the attribute, never its value. */
function sopMismatch(attribute: 'SOPClassUID' | 'SOPInstanceUID'): Decision {
  return {
    answer: { status: DATASET_MISMATCH, comment: `SOP_MISMATCH: the data set's ${attribute} is not the request's` },
    outcome: 'invalid',
    statusCode: 422,
    output: { reason: 'SOP_MISMATCH', attribute },
  };
}

/** Other uploads held MAX_INFLIGHT_BODY_BYTES while it came (HTTP answers 503 with Retry-After): the caller sends it again. */
function uploadsBusy(): Decision {
  return {
    answer: { status: OUT_OF_RESOURCES, comment: 'too many uploads at once; send it again shortly' },
    outcome: outcomeOf(503),
    statusCode: 503,
    output: { reason: 'UPLOADS_BUSY' },
  };
}

/** Past MEDICAL_MAX_BODY_BYTES, audited with the code HTTP gives a DICOM upload past it (413 BODY_TOO_LARGE). */
function tooLarge(): Decision {
  return {
    answer: { status: OUT_OF_RESOURCES, comment: 'instance larger than MEDICAL_MAX_BODY_BYTES' },
    outcome: 'invalid',
    statusCode: 413,
    output: { reason: 'BODY_TOO_LARGE' },
  };
}
