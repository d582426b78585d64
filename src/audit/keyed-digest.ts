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
