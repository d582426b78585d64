import { storableJson, storableText } from '../common/storable-text';
import type { AuditDraft } from './audit-writer.service';

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
