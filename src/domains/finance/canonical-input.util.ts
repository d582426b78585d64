import { canonicalJson } from '../../audit/audit-chain';

/** The canonical bytes (JSON, keys sorted) of a validated request body, for the audit trail's keyed digest. */
export function canonicalBytes(body: unknown): Uint8Array {
  return Buffer.from(canonicalJson(body));
}
