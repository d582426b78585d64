import { createHmac } from 'node:crypto';

/**
 * HMAC-SHA256 under `secret` of each part prefixed by its length (64 bits, big-endian), so ["ab","c"] and
 * ["a","bc"] differ: the audit trail's input digest. No other imports: the digest thread loads it too.
 */
export function keyedDigest(secret: Buffer, parts: readonly Uint8Array[]): string {
  const hmac = createHmac('sha256', secret);
  for (const part of parts) {
    const length = Buffer.alloc(8);
    length.writeBigUInt64BE(BigInt(part.byteLength));
    hmac.update(length).update(part);
  }
  return hmac.digest('hex');
}

/**
 * A key of its own for one use of the audit secret (HMAC-SHA256 of `label` under it): the anchors', the row hashes',
 * the tenant cursors' keys are each derived under their own label, so that none serves another use.
 */
export function derivedKey(auditSecret: Buffer, label: string): Buffer {
  return createHmac('sha256', auditSecret).update(label).digest();
}
