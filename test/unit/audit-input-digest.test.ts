import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { InputDigester } from '../../src/audit/input-digest';
import { AppConfig } from '../../src/config/app-config';

const SECRET = 'an audit secret of at least thirty-two characters';

function digester(): InputDigester {
  return new InputDigester(Object.assign(new AppConfig(), { AUDIT_HMAC_SECRET: SECRET }));
}

/** The digest as documented: HMAC-SHA256 under the secret of each part prefixed by its 64-bit length. */
function expected(parts: Uint8Array[]): string {
  const hmac = createHmac('sha256', SECRET);
  for (const part of parts) {
    const length = Buffer.alloc(8);
    length.writeBigUInt64BE(BigInt(part.byteLength));
    hmac.update(length).update(part);
  }
  return hmac.digest('hex');
}

const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

describe('audit input digests', () => {
  it('digestAsync answers what digest does, for a small input and for an image-sized one of several parts', async () => {
    const d = digester();
    for (const parts of [[bytes(10, 1)], [bytes(901_000, 2)], [bytes(70_000, 3), bytes(0, 4), bytes(300_000, 5)]]) {
      assert.equal(d.digest(parts), expected(parts));
      assert.equal(await d.digestAsync(parts), expected(parts));
    }
  });

  it('keeps parts apart by their lengths, on the thread pool too', async () => {
    const d = digester();
    const whole = bytes(200_000, 6);
    const split = [whole.subarray(0, 100_000), whole.subarray(100_000)];
    assert.notEqual(await d.digestAsync([whole]), await d.digestAsync(split));
  });

  it('reads the bytes when called: a buffer changed or handed on afterwards does not change the digest', async () => {
    const d = digester();
    const image = bytes(500_000, 7);
    const before = expected([image]);
    const digesting = d.digestAsync([image]);
    image.fill(0);
    structuredClone(image.buffer, { transfer: [image.buffer] }); // detached, as a transfer to a worker leaves it
    assert.equal(await digesting, before);
  });
});
