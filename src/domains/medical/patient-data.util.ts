import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { AuditInputDigester } from '../../common/access';

/**
 * Keeps identifiers inside the request. UIDs become keyed-hash pseudonyms (`2.25.<decimal>`, a valid
 * UID, stable for one server secret, not reversible without it) before they reach a log, a metric,
 * the audit trail or a table key. Values that must come back to the PACS are sealed with AES-256-GCM
 * under a key derived from the same server secret.
 */
export class PatientDataProtector {
  private readonly key: Buffer;

  constructor(private readonly digester: AuditInputDigester) {
    this.key = createHash('sha256')
      .update(digester.digest([Buffer.from('medical:sealing-key:v1')]))
      .digest();
  }

  pseudonymUid(uid: string): string {
    const hex = this.digester.digest([Buffer.from('medical:uid:v1'), Buffer.from(uid)]).slice(0, 32);
    return `2.25.${BigInt(`0x${hex}`).toString(10)}`;
  }

  seal(value: unknown): Buffer {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    const body = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]);
  }

  unseal<T>(sealed: Buffer): T {
    const decipher = createDecipheriv('aes-256-gcm', this.key, sealed.subarray(0, 12));
    decipher.setAuthTag(sealed.subarray(12, 28));
    const text = Buffer.concat([decipher.update(sealed.subarray(28)), decipher.final()]).toString('utf8');
    return JSON.parse(text) as T;
  }
}
