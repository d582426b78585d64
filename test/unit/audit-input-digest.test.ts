import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import type { Worker } from 'node:worker_threads';
import { canonicalJson } from '../../src/audit/audit-chain';
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

describe('audit input digests of large JSON bodies (the digest thread)', () => {
  const canonicalOf = (text: string) => () => Buffer.from(canonicalJson(JSON.parse(text)));
  const texts = [
    '{"b":1,"a":[3,2,{"z":null,"y":true}],"c":"x"}',
    JSON.stringify({ transactions: Array.from({ length: 400 }, (_, i) => ({ z: i, id: `tx-${i}`, amount: i / 7 })) }),
    // Escapes, characters outside the BMP, numbers JSON writes otherwise than sent, whitespace, integer-like keys.
    ' { "é" : "\\u00e9\\ud83d\\ude00\\n\\"" , "n" : [1e21, 1E-7, -0, 0.1, 100.0], "10": 1, "9": 2, "": {} } ',
  ];

  it("answers what digest gives for the text's canonical form, on the thread and without it", async () => {
    const d = digester();
    try {
      for (const text of texts) {
        const expected = d.digest([canonicalOf(text)()]);
        assert.equal(await d.digestJson(Buffer.from(text), canonicalOf(text)), expected, text.slice(0, 40));
      }
      // Several at once, answered each with its own.
      const all = await Promise.all(texts.map((t) => d.digestJson(Buffer.from(t), canonicalOf(t))));
      assert.deepEqual(
        all,
        texts.map((t) => d.digest([canonicalOf(t)()])),
      );
    } finally {
      await d.onApplicationShutdown();
    }
  });

  it('reads the bytes as the JSON parser does: a leading BOM dropped, bytes that are not UTF-8 as U+FFFD', async () => {
    const d = digester();
    try {
      const bytes = Buffer.concat([
        Buffer.from([0xef, 0xbb, 0xbf]),
        Buffer.from('{"b":"'),
        Buffer.from([0xff, 0xc3]), // not UTF-8: two U+FFFD
        Buffer.from('x","a":"\u00e9"}'),
      ]);
      const parsed: unknown = JSON.parse(bytes.toString('utf8').slice(1));
      assert.deepEqual(parsed, { b: '\ufffd\ufffdx', a: '\u00e9' });
      const expected = d.digest([Buffer.from(canonicalJson(parsed))]);
      assert.equal(await d.digestJson(bytes, () => Buffer.from(canonicalJson(parsed))), expected);
      // The thread answered (not the fallback): a fallback giving other bytes is not called.
      assert.equal(await d.digestJson(bytes, () => Buffer.from('other')), expected);
      // A body the JSON parser reads in pieces: the thread reads it the same way.
      const batch = JSON.stringify({
        transactions: Array.from({ length: 9000 }, (_, i) => ({ id: `t-${i}`, v: i / 3 })),
      });
      assert.equal(
        await d.digestJson(Buffer.from(batch), () => Buffer.from('other')),
        d.digest([canonicalOf(batch)()]),
      );
    } finally {
      await d.onApplicationShutdown();
    }
  });

  it('works a digest out on the event loop when the thread stops before it answers, and starts a new thread', async () => {
    const d = digester();
    try {
      const big = JSON.stringify({ rows: Array.from({ length: 200_000 }, (_, i) => ({ i, s: `row ${i}` })) });
      await d.digestJson(Buffer.from(texts[0]), canonicalOf(texts[0])); // the thread is up
      const thread = (d as unknown as { digestThread: Worker }).digestThread;
      const pending = d.digestJson(Buffer.from(big), canonicalOf(big));
      await thread.terminate();
      assert.equal(await pending, d.digest([canonicalOf(big)()]));
      assert.equal(
        await d.digestJson(Buffer.from(texts[1]), canonicalOf(texts[1])),
        d.digest([canonicalOf(texts[1])()]),
      );
      assert.notEqual((d as unknown as { digestThread?: Worker }).digestThread, thread, 'a new thread');
    } finally {
      await d.onApplicationShutdown();
    }
  });

  it('stops starting threads after three are lost in a row without an answer (a broken install): digests here', async () => {
    const d = digester();
    const thread = () => (d as unknown as { digestThread?: Worker }).digestThread;
    try {
      const big = JSON.stringify({ rows: Array.from({ length: 100_000 }, (_, i) => ({ i, s: `row ${i}` })) });
      const expected = d.digest([canonicalOf(big)()]);
      for (let lost = 0; lost < 3; lost++) {
        const pending = d.digestJson(Buffer.from(big), canonicalOf(big));
        await thread()!.terminate();
        assert.equal(await pending, expected);
      }
      assert.equal(
        await d.digestJson(Buffer.from(texts[1]), canonicalOf(texts[1])),
        d.digest([canonicalOf(texts[1])()]),
      );
      assert.equal(thread(), undefined, 'no fourth thread');
    } finally {
      await d.onApplicationShutdown();
    }
  });

  it('after shutdown still answers, on the event loop', async () => {
    const d = digester();
    await d.digestJson(Buffer.from(texts[0]), canonicalOf(texts[0]));
    await d.onApplicationShutdown();
    assert.equal(await d.digestJson(Buffer.from(texts[2]), canonicalOf(texts[2])), d.digest([canonicalOf(texts[2])()]));
    assert.equal((d as unknown as { digestThread?: Worker }).digestThread, undefined, 'no thread started again');
    await d.onApplicationShutdown();
  });
});
