import type { FastifyRequest } from 'fastify';
import type { Permission, Principal } from './permissions';

/**
 * What a handler tells the audit trail about its request: the model it ran, the digest of its
 * input and a summary of its output. Handlers fill it in with `noteAudit`; the audit module reads it when the answer is sent.
 */
export interface AuditNote {
  action?: string;
  permission?: Permission;
  principal?: Principal;
  model?: { name: string; version?: string };
  /** AuditInputDigester's digest of the canonical input; the input itself is never stored. */
  inputDigest?: string;
  /** Scores, decision, shapes: what a reviewer needs, never raw images or identifiers. */
  output?: Record<string, unknown>;
  /** Why a request was refused (e.g. `token expired`), for the audit row. */
  reason?: string;
  /**
   * Set on a refusal past a budget of refusals (RefusalLimiter: per address, or per subject within its tenant
   * for its 403s and 429s): the request gets no row of its own but is counted into one summary row per `group`,
   * tenant, action, status and window (AuditAggregates), which names `clientAddress` as the client (an IPv6
   * address by its /64) or else the last request's.
   */
  aggregate?: { group: string; clientAddress?: string };
}

const NOTE = Symbol('gateway.auditNote');
type WithNote = FastifyRequest & { [NOTE]?: AuditNote };

/** Marks the request as audited (a non-public route) and merges `note` into what is recorded. */
export function noteAudit(request: FastifyRequest, note: AuditNote): void {
  const target = request as WithNote;
  target[NOTE] = { ...target[NOTE], ...note };
}

/**
 * Runs `work` while the request's input digest is worked out elsewhere (AuditInputDigester.digestAsync or
 * digestJson), and notes the digest once both are done, before any answer leaves, a refusal's too.
 */
export async function withInputDigest<T>(
  request: FastifyRequest,
  digesting: Promise<string>,
  work: () => Promise<T>,
): Promise<T> {
  // Handled at once as well as awaited below: a digest that failed while `work` ran must not be left an
  // unhandled rejection (which ends the process).
  digesting.catch(() => undefined);
  try {
    return await work();
  } finally {
    noteAudit(request, { inputDigest: await digesting });
  }
}

/** The note of an audited request; undefined for public routes and unmatched paths. */
export function auditNoteOf(request: FastifyRequest): AuditNote | undefined {
  return (request as WithNote)[NOTE];
}

export function principalOf(request: FastifyRequest): Principal | undefined {
  return auditNoteOf(request)?.principal;
}

const CALLER = Symbol('gateway.identifiedCaller');
type WithCaller = FastifyRequest & { [CALLER]?: Principal };

/** Names the verified caller of a public route that identifies its callers (Public({ identifies: true })). */
export function identifyCaller(request: FastifyRequest, principal: Principal): void {
  (request as WithCaller)[CALLER] = principal;
}

/** The verified caller: of a protected route, or of a public one that identifies its callers and got a valid token. */
export function callerOf(request: FastifyRequest): Principal | undefined {
  return principalOf(request) ?? (request as WithCaller)[CALLER];
}
