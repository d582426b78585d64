import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { derivedKey } from './keyed-digest';

/**
 * The paging cursor of GET /v1/audit/events for a caller whose token names a tenant. A row id would tell it how
 * many rows every tenant wrote between its own (the ids are everyone's), so the id is sealed with AES-256-GCM
 * under a key derived from the audit secret, the tenant as associated data: the cursor can be neither read nor
 * forged, nor used by another tenant. base64url of nonce (12 bytes), the id (8, big-endian) and the tag (16).
 */
const NONCE_BYTES = 12;
const ID_BYTES = 8;
const TAG_BYTES = 16;

/** A sealed cursor as text: 36 bytes in base64url, 48 characters with no padding, so one text is one cursor. */
export const TENANT_CURSOR = /^[A-Za-z0-9_-]{48}$/;

/** The tenant cursors' own key, derived from the audit secret as the anchors' is, so it serves nothing else. */
export function tenantCursorKey(auditSecret: Buffer): Buffer {
  return derivedKey(auditSecret, 'gateway audit events tenant cursor v1');
}

/** Row `id` (a positive bigint as text) sealed for `tenant`. */
export function sealTenantCursor(key: Buffer, tenant: string, id: string): string {
  const nonce = randomBytes(NONCE_BYTES);
  const plain = Buffer.alloc(ID_BYTES);
  plain.writeBigUInt64BE(BigInt(id));
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(tenant, 'utf8'));
  return Buffer.concat([nonce, cipher.update(plain), cipher.final(), cipher.getAuthTag()]).toString('base64url');
}

/** The row id a cursor sealed for `tenant` holds; undefined for any other text (forged, altered, another tenant's). */
export function openTenantCursor(key: Buffer, tenant: string, cursor: string): string | undefined {
  if (!TENANT_CURSOR.test(cursor)) return undefined;
  const sealed = Buffer.from(cursor, 'base64url');
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES });
  decipher.setAAD(Buffer.from(tenant, 'utf8'));
  decipher.setAuthTag(sealed.subarray(NONCE_BYTES + ID_BYTES));
  try {
    const plain = Buffer.concat([
      decipher.update(sealed.subarray(NONCE_BYTES, NONCE_BYTES + ID_BYTES)),
      decipher.final(),
    ]);
    return plain.readBigUInt64BE().toString();
  } catch {
    return undefined;
  }
}
