import type { AuditDraft } from './audit-writer.service';

/**
 * Text as PostgreSQL can store it and as it will read back: NUL (which PostgreSQL refuses in text and
 * jsonb) and lone UTF-16 surrogates (which have no UTF-8 form, so the stored text would differ from
 * the hashed one) become U+FFFD.
 */
export function storableText(value: string): string {
  // eslint-disable-next-line no-control-regex
  return (value.includes('\u0000') ? value.replace(/\u0000/g, '\uFFFD') : value).toWellFormed();
}

/** A JSON value with every key and string made storable (dates and other scalars kept). */
export function storableJson<T>(value: T): T {
  if (typeof value === 'string') return storableText(value) as T;
  if (Array.isArray(value)) return value.map(storableJson) as T;
  if (typeof value !== 'object' || value === null || value instanceof Date) return value;
  const out: Record<string, unknown> = {};
  for (const [key, member] of Object.entries(value)) out[storableText(key)] = storableJson(member);
  return out as T;
}

/**
 * A draft whose every string PostgreSQL will store as it is hashed. Rows carry what callers sent (a
 * token's subject, an AE title from a DIMSE peer, an asset id, a reason quoting a file), and one row
 * the database refuses fails the commit of every row in its group: each of those requests would be
 * answered 503.
 */
export function storableDraft(draft: AuditDraft): AuditDraft {
  const text = (v: string | null): string | null => (v === null ? null : storableText(v));
  return {
    ...draft,
    actor: text(draft.actor),
    roles: draft.roles.map(storableText),
    tenant: text(draft.tenant),
    action: storableText(draft.action),
    modelName: text(draft.modelName),
    modelVersion: text(draft.modelVersion),
    requestId: storableText(draft.requestId),
    clientAddress: storableText(draft.clientAddress),
    outputSummary: storableJson(draft.outputSummary),
  };
}
