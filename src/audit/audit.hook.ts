import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AuditNote, auditNoteOf } from '../common/access';
import { containsPan } from '../common/pan';
import type { ProblemFilter } from '../common/errors/problem.filter';
import type { AuditOutcome } from './audit-event.entity';
import type { AuditAggregates } from './audit-aggregates';
import { AuditDraft, AuditUnavailable, AuditWriter } from './audit-writer.service';

/**
 * Every answer to a non-public route waits here until its audit row is committed. If it cannot be,
 * the answer is replaced by 503: no decision leaves the gateway unaudited. Denials (401, 403, 429)
 * pass through the same hook, so they are recorded too; a refusal whose note says `aggregate` (past a
 * budget of refusals: its address's of refused tokens, its subject's in its tenant of 403s and 429s) is
 * counted into a summary row (AuditAggregates) and answered without waiting.
 */
export function registerAuditHook(
  fastify: FastifyInstance,
  writer: AuditWriter,
  aggregates: AuditAggregates,
  problems: ProblemFilter,
): void {
  // Counts requests on their way to an answer, so the writer knows whether more rows are coming.
  fastify.addHook('onRequest', (request, _reply, done) => {
    writer.requestStarted();
    unanswered.add(request);
    done();
  });
  fastify.addHook('onSend', async (request: FastifyRequest, reply: FastifyReply, payload: unknown) => {
    if (unanswered.delete(request)) writer.requestAnswered();
    if (committedEarly.has(request)) return payload;
    const draft = draftOf(request, reply);
    if (!draft) return payload;
    const aggregate = auditNoteOf(request)?.aggregate;
    if (aggregate !== undefined) {
      const { group, clientAddress } = aggregate;
      aggregates.count(group, clientAddress === undefined ? draft : { ...draft, clientAddress });
      return payload;
    }
    try {
      await writer.record(draft);
      return payload;
    } catch (error) {
      if (!(error instanceof AuditUnavailable)) throw error;
      const answer = problems.render(
        error.answer('the audit trail', '; no answer leaves without its audit row: send the request again'),
        request,
      );
      void reply.code(answer.status);
      for (const [name, value] of Object.entries(answer.headers)) void reply.header(name, value);
      return answer.body;
    }
  });
}

/** Requests counted by the onRequest hook whose answer has not begun. */
const unanswered = new WeakSet<FastifyRequest>();
/** Requests whose row recordAuditBeforeStreaming committed. */
const committedEarly = new WeakSet<FastifyRequest>();

/**
 * For an answer that never passes onSend (Nest's @Sse writes to the raw response): commits the
 * request's audit row now, as a success with the reply's status, before the stream starts. Rejects
 * with AuditUnavailable when the row cannot be written (the filter then answers 503, audited as
 * usual). Does nothing where the audit hook is not registered (AUDIT_ENABLED=false).
 */
export async function recordAuditBeforeStreaming(
  writer: AuditWriter,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<void> {
  if (!unanswered.delete(request)) return;
  writer.requestAnswered();
  const draft = draftOf(request, reply);
  if (!draft) return;
  await writer.record(draft);
  committedEarly.add(request);
}

export function outcomeOf(status: number): AuditOutcome {
  if (status < 400) return 'ok';
  if (status === 401 || status === 403 || status === 429) return 'denied';
  if (status < 500) return 'invalid';
  return 'error';
}

function draftOf(request: FastifyRequest, reply: FastifyReply): AuditDraft | undefined {
  const note = auditNoteOf(request);
  if (!note) return undefined;
  const status = reply.statusCode;
  const principal = note.principal;
  const ok = status < 400;
  return {
    occurredAt: new Date(),
    actor: clip(principal?.subject, 256),
    roles: (principal?.roles ?? []).slice(0, 32).map((r) => clip(r, 64) ?? ''),
    tenant: clip(principal?.tenant, 256),
    action: clip(note.action, 64) ?? 'unknown',
    modelName: clipWithoutPan(note.model?.name, 128),
    modelVersion: clipWithoutPan(note.model?.version, 64),
    requestId: clip(String(request.id), 128) ?? '',
    clientAddress: clip(request.ip, 64) ?? '',
    inputDigest: note.inputDigest ?? null,
    outputSummary: ok ? (note.output ?? null) : refusalSummary(note, status),
    outcome: outcomeOf(status),
    statusCode: status,
    latencyMs: Math.round(reply.elapsedTime * 1000) / 1000,
  };
}

/**
 * A refusal's reason, as the caller was told it. A 4xx/5xx the handler answered itself, with no error thrown and so
 * no reason noted (a STOW-RS request none of whose instances was stored is a 409 with a store response), keeps
 * what the handler noted beside it: its rows said only `HTTP 409`, not which parts failed or why.
 */
function refusalSummary(note: AuditNote, status: number): Record<string, unknown> {
  const reason = clipWithoutPan(note.reason, 200) ?? `HTTP ${status}`;
  return note.reason === undefined && note.output ? { reason, ...note.output } : { reason };
}

/**
 * The model name and version come from the path (`/v2/models/4111111111111111/infer` is a 404 like any
 * unknown model), and a refusal's reason may quote them: a card number there is not written to the
 * append-only trail, as an X-Request-Id that looks like one is not.
 */
function withoutPan(value: string | undefined): string | undefined {
  return value !== undefined && containsPan(value) ? CARD_NUMBER_REMOVED : value;
}

export const CARD_NUMBER_REMOVED = '(card number removed)';

/**
 * Bounds a string to its column with no card number in it. Checked after the cut, since cutting a longer run of
 * digits (`…-41111111111111110`, no card number) can leave one that is; and before it, since a cut through a card
 * number would hide it from the check but keep most of its digits.
 */
export function clipWithoutPan(value: string | undefined, max: number): string | null {
  const cut = clip(withoutPan(value), max);
  return cut !== null && containsPan(cut) ? CARD_NUMBER_REMOVED : cut;
}

/** Bounds a caller-influenced string to its column (AuditWriter.record makes every string storable). */
function clip(value: string | undefined, max: number): string | null {
  if (value === undefined) return null;
  return value.length > max ? value.slice(0, max) : value;
}
