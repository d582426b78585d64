import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AuditInputDigester } from '../common/access';
import type { AppConfig } from '../config/app-config';

const DEV_SECRET_FILE = 'audit-hmac.key';

/**
 * HMAC-SHA256 of a request's canonical input under a server secret: proves later which input a
 * decision was made on, while a low-entropy input (an amount, a birth date) cannot be guessed back
 * from the digest by anyone without the secret.
 */
export class InputDigester extends AuditInputDigester {
  private readonly secret: Buffer;

  constructor(config: AppConfig) {
    super();
    this.secret = auditSecret(config);
  }

  digest(parts: readonly Uint8Array[]): string {
    const hmac = createHmac('sha256', this.secret);
    for (const part of parts) {
      // Length-prefixed, so ["ab","c"] and ["a","bc"] differ.
      const length = Buffer.alloc(8);
      length.writeBigUInt64BE(BigInt(part.byteLength));
      hmac.update(length).update(part);
    }
    return hmac.digest('hex');
  }
}

/**
 * The audit trail's server secret (input digests, chain anchors): AUDIT_HMAC_SECRET, required in
 * production; outside production one generated once in DATA_DIR.
 */
export function auditSecret(config: Pick<AppConfig, 'AUDIT_HMAC_SECRET' | 'NODE_ENV' | 'DATA_DIR'>): Buffer {
  if (config.AUDIT_HMAC_SECRET) return Buffer.from(config.AUDIT_HMAC_SECRET);
  if (config.NODE_ENV === 'production') {
    throw new Error('AUDIT_HMAC_SECRET must be set in production (at least 32 characters)');
  }
  return Buffer.from(devSecret(config.DATA_DIR));
}

function devSecret(dataDir: string): string {
  const path = join(dataDir, DEV_SECRET_FILE);
  if (!existsSync(path)) {
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(path, randomBytes(32).toString('hex'), { mode: 0o600 });
  }
  return readFileSync(path, 'utf8').trim();
}
