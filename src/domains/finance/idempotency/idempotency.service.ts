import { Injectable, Logger, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AuditNote, auditNoteOf, AuditInputDigester, noteAudit, principalOf } from '../../../common/access';
import { AppError } from '../../../common/errors/app-error';
import { containsPan } from '../../../common/pan';
import { AppConfig } from '../../../config/app-config';
import { bodyDigestAsync } from '../canonical-input.util';
import { decisionCounts } from '../batch-summary.util';
import { CREDIT_DECISIONS } from '../credit-assessment.dto';
import { FinanceModels } from '../finance-models';
import { FRAUD_DECISIONS } from '../fraud-score.dto';
import { IdempotencyRepository } from './idempotency.repository';

export const IDEMPOTENCY_HEADER = 'idempotency-key';
export const IDEMPOTENCY_DOC =
  'A retry with the same key and request returns the first answer (Idempotent-Replayed: true) without scoring or assessing again; the same key with a different request is refused with 422. Keys are per caller and route. Kept IDEMPOTENCY_TTL_HOURS.';
/** What an Idempotency-Key may be: 1-200 visible ASCII characters (the key column's length). */
const KEY_FORMAT = /^[\x21-\x7e]{1,200}$/;
/**
 * The Idempotency-Key header as the OpenAPI document gives it, with the format the service refuses others by: a
 * client generated from the document checks its keys as the gateway will.
 */
export const IDEMPOTENCY_KEY_HEADER = {
  name: 'Idempotency-Key',
  required: false,
  description: IDEMPOTENCY_DOC,
  schema: { type: 'string', pattern: KEY_FORMAT.source },
};
/** How the 200 says it is a replay, for OpenAPI. */
export const IDEMPOTENCY_REPLAY_HEADERS = {
  'Idempotent-Replayed': {
    description:
      'Sent (true) when this is the answer kept for the Idempotency-Key, returned without scoring or assessing again',
    schema: { type: 'string', enum: ['true'] },
  },
};
const PURGE_EVERY_MS = 10 * 60 * 1000;
/** A pending key's lease past the inference deadline: room for the run itself, the digest and the database. */
const LEASE_MARGIN_MS = 30_000;

interface Answer {
  digest: string;
  status: number;
  body: unknown;
  /** Answered by this call (not found kept from an earlier one). */
  fresh: boolean;
}

/**
 * `Idempotency-Key` on the finance POST routes (fraud scores, their batch, credit assessments). The first request with a key is answered and its
 * answer kept (in the database, for IDEMPOTENCY_TTL_HOURS); a retry with the same key and the same
 * request gets that answer back, marked `Idempotent-Replayed: true`, and is not scored again; the
 * same key with a different request is refused with 422. Two identical requests at once are
 * scored once: in this process the second waits for the first; across processes the database
 * entry decides, and the loser is told to retry (409) while the first is still running.
 * Keys are per caller (token issuer, tenant and subject) and route. A failed first request frees its key.
 *
 * A service the route's handler calls around its work (`answer`), not a Nest interceptor: an interceptor
 * puts the route's every call through RxJS and an async-context binding per step, which took about a sixth
 * of the event loop's time per single fraud score, with or without a key.
 */
@Injectable()
export class IdempotencyService implements OnModuleInit, OnModuleDestroy {
  private readonly running = new Map<string, Promise<Answer>>();
  private readonly logger = new Logger('Idempotency');
  private purge: NodeJS.Timeout | undefined;

  constructor(
    private readonly repository: IdempotencyRepository,
    private readonly digester: AuditInputDigester,
    private readonly config: AppConfig,
    private readonly models: FinanceModels,
  ) {}

  onModuleInit(): void {
    this.purge = setInterval(() => void this.repository.purgeExpired().catch(() => undefined), PURGE_EVERY_MS).unref();
  }

  onModuleDestroy(): void {
    clearInterval(this.purge);
  }

  /**
   * Runs `handle` (the route's work, its answer the route's 200 body) under the request's Idempotency-Key, if
   * it has one: the answer kept for the key is returned instead where there is one (Idempotent-Replayed).
   */
  async answer(request: FastifyRequest, reply: FastifyReply, handle: () => Promise<unknown>): Promise<unknown> {
    const header = request.headers[IDEMPOTENCY_HEADER];
    if (header === undefined) return handle();
    // Node joins repeated header lines with ", ", which no key may hold: say what is wrong with such a request, as
    // a proxy in front that kept the first or the last line would have used another key.
    const lines = headerLines(request, IDEMPOTENCY_HEADER);
    if (lines > 1) {
      const reason = `given ${lines} times; send one key`;
      throw new AppError('VALIDATION_FAILED', `Idempotency-Key: ${reason}`, {
        fields: [{ field: 'Idempotency-Key', reason }],
      });
    }
    if (typeof header !== 'string' || !KEY_FORMAT.test(header)) {
      throw new AppError('VALIDATION_FAILED', 'Idempotency-Key: must be 1-200 visible ASCII characters', {
        fields: [{ field: 'Idempotency-Key', reason: 'must be 1-200 visible ASCII characters' }],
      });
    }
    // The key is stored as it is: one that looks like a card number is refused like a body carrying one.
    if (containsPan(header)) {
      throw new AppError('PAN_DETECTED', "a card number is not accepted; send the vault's card token instead", {
        fields: [{ field: 'Idempotency-Key', reason: 'looks like a card number (PAN); never send one' }],
      });
    }
    const scope = this.scopeOf(request);
    // A large body's digest comes from the digest thread (begun as it was parsed, on the batch route).
    const digest = await bodyDigestAsync(this.digester, request.body);
    // Whatever the answer, its row names the body it is about: a 422 IDEMPOTENCY_KEY_REUSED's (the body refused,
    // which the key's first row does not name) and a 409's too, not only a scored request's.
    noteAudit(request, { inputDigest: digest });
    const id = `${scope}\n${header}`;

    let first = false;
    let result: Answer | undefined;
    while (result === undefined) {
      const running = this.running.get(id);
      if (running) {
        // Another request of this process holds the key. If it fails, its key is free again (answerOnce
        // released it): this request is then answered as if it had come first, never with the other's
        // error, which speaks of the other's body.
        result = await running.catch(() => undefined);
        continue;
      }
      first = true;
      const answer = this.answerOnce(scope, header, digest, handle);
      this.running.set(id, answer);
      try {
        result = await answer;
      } finally {
        if (this.running.get(id) === answer) this.running.delete(id);
      }
    }
    if (result.digest !== digest) throw reused();
    if (!first || !result.fresh) {
      void reply.header('Idempotent-Replayed', 'true');
      void reply.status(result.status);
      // The replay's row names the body it answered, as the first request's row does.
      noteAudit(request, { ...replayNote(result.body), inputDigest: digest });
    }
    return result.body;
  }

  /**
   * Route and caller: SHA-256 (hex) of the action, the token's issuer, tenant and subject, so two
   * tenants' callers with the same subject never share a key, and a subject of any length or content
   * fits the column.
   */
  private scopeOf(request: FastifyRequest): string {
    const principal = principalOf(request);
    const caller = [
      auditNoteOf(request)?.action ?? request.url,
      this.config.AUTH_ISSUER,
      principal?.tenant ?? null,
      principal?.subject ?? null,
    ];
    return createHash('sha256').update(JSON.stringify(caller)).digest('hex');
  }

  /** Claims the key and answers, or finds the answer already kept for it. */
  private async answerOnce(
    scope: string,
    key: string,
    digest: string,
    handle: () => Promise<unknown>,
  ): Promise<Answer> {
    const ttlMs = this.config.IDEMPOTENCY_TTL_HOURS * 3600 * 1000;
    // As long as the slowest finance model may take: a manifest's batching.timeoutMs (60 s, say) counts as
    // INFERENCE_TIMEOUT_MS does, or a retry took over a key whose first request was still waiting, and scored again.
    const leaseMs = this.models.longestTimeoutMs() + LEASE_MARGIN_MS;
    const claimed = await this.repository.claim(scope, key, digest, ttlMs, leaseMs);
    if (claimed) {
      let body: unknown;
      try {
        body = await handle();
      } catch (error) {
        await this.repository.release(scope, key, claimed).catch(() => undefined);
        throw error;
      }
      try {
        await this.repository.complete(scope, key, claimed, 200, body);
      } catch (error) {
        // Scored and audited: the caller gets the answer; a retry is scored again.
        this.logger.error({ msg: 'answer not kept for its Idempotency-Key; answered anyway', error: String(error) });
        await this.repository.release(scope, key, claimed).catch(() => undefined);
      }
      return { digest, status: 200, body, fresh: true };
    }
    const stored = await this.repository.find(scope, key);
    if (!stored) throw inProgress('the key expired while being checked; retry', 'expired while being checked; retry');
    if (stored.requestDigest !== digest) throw reused();
    if (stored.state === 'pending') {
      throw inProgress(
        'a request with this Idempotency-Key is still being answered; retry',
        'a request with this key is still being answered; retry',
      );
    }
    return {
      digest: stored.requestDigest,
      status: stored.responseStatus ?? 200,
      body: stored.responseBody,
      fresh: false,
    };
  }
}

/** 409 with Retry-After: the key is busy; like every refusal about the key, it names Idempotency-Key. */
function inProgress(detail: string, reason: string): AppError {
  return new AppError('IDEMPOTENCY_IN_PROGRESS', detail, {
    retryAfterSeconds: 1,
    fields: [{ field: 'Idempotency-Key', reason }],
  });
}

/** How many header lines named `name` (lower case) the request has: `request.headers` joins them. */
function headerLines(request: FastifyRequest, name: string): number {
  const raw = request.raw.rawHeaders;
  let count = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === name) count++;
  return count;
}

function reused(): AppError {
  return new AppError('IDEMPOTENCY_KEY_REUSED', 'this Idempotency-Key was used with a different request', {
    fields: [{ field: 'Idempotency-Key', reason: 'already used with a different request body' }],
  });
}

/**
 * The audit note of a replay: the kept answer's model and decision summary (as the first request's
 * row has it) and the first request's id, so the row says what the caller was given again.
 */
function replayNote(body: unknown): AuditNote {
  const answer = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  const output: Record<string, unknown> = { idempotentReplay: true };
  if (typeof answer.requestId === 'string') output.originalRequestId = answer.requestId;
  for (const field of [
    'fraudProbability',
    'probabilityOfDefault',
    'grade',
    'decision',
    'transactions',
    'scored',
    'assessed',
    'failed',
  ]) {
    if (field in answer) output[field] = answer[field];
  }
  // A credit assessment's reasons by code, as its first row has them.
  if (Array.isArray(answer.reasons)) {
    output.reasons = (answer.reasons as Array<{ code?: unknown }>).map((reason) => reason?.code);
  }
  if (Array.isArray(answer.items)) {
    const items = answer.items as Array<{ result?: { decision?: unknown } }>;
    // A credit batch (assessed applications) or a fraud batch (scored transactions), counted as its first row was.
    if ('assessed' in answer) {
      output.applications = items.length;
      output.decisions = decisionCounts(items, CREDIT_DECISIONS);
    } else {
      output.transactions = items.length;
      output.decisions = decisionCounts(items, FRAUD_DECISIONS);
    }
  }
  const model = answer.model as { name?: unknown; version?: unknown } | undefined;
  if (typeof model?.name === 'string' && typeof model.version === 'string') {
    return { model: { name: model.name, version: model.version }, output };
  }
  return { output };
}
