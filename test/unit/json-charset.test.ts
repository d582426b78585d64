import assert from 'node:assert/strict';
import { isUtf8 } from 'node:buffer';
import { describe, it } from 'node:test';
import { charsetOf, charsetRefusal, firstInvalidUtf8, notUtf8Error } from '../../src/common/http/json-charset';
import { seededRandom } from '../fixtures/random';

describe('JSON body charset', () => {
  it('reads the charset parameter quoted or not, in any case, and refuses any but UTF-8 naming Content-Type', () => {
    assert.equal(charsetOf(undefined), undefined);
    assert.equal(charsetOf('application/json'), undefined);
    assert.equal(charsetOf('application/json; charset=utf-16le'), 'utf-16le');
    assert.equal(charsetOf('application/json;CHARSET = "UTF-16"; q=1'), 'UTF-16');
    assert.equal(charsetOf('application/json; foo=bar; charset="ut\\f-8"'), 'utf-8');
    for (const type of [
      undefined,
      'application/json',
      'application/json; charset=UTF-8',
      'application/json;charset="utf-8"',
      'application/json; charset=utf8',
      'application/json; charset=UTF8',
    ]) {
      assert.equal(charsetRefusal(type), undefined, type);
    }
    for (const type of [
      'application/json; charset=utf-16le',
      'application/json; charset="latin1"',
      'application/json; charset=',
      'application/json; charset=utf-16',
    ]) {
      const refusal = charsetRefusal(type);
      assert.ok(refusal, type);
      assert.equal(refusal.code, 'UNSUPPORTED_MEDIA_TYPE');
      assert.equal(refusal.fields?.[0].field, 'Content-Type');
      assert.match(refusal.fields?.[0].reason ?? '', /is not accepted: JSON is accepted only as UTF-8/);
    }
  });

  it('finds the first byte that begins no UTF-8 sequence', () => {
    const cases: Array<[number[], number]> = [
      [[0x41, 0x42], -1],
      [[0x41, 0xe9, 0x42], 1], // Latin-1 é
      [[0xc3, 0xa9, 0xe9], 2], // é in UTF-8, then in Latin-1
      [[0xc0, 0x80], 0], // overlong NUL
      [[0xe0, 0x80, 0x80], 0], // overlong
      [[0xed, 0xa0, 0x80], 0], // a surrogate (U+D800)
      [[0xf4, 0x90, 0x80, 0x80], 0], // past U+10FFFF
      [[0x41, 0xe2, 0x82], 1], // cut short at the end
      [[0x80], 0], // a stray continuation byte
      [[0xf0, 0x9f, 0x98, 0x80, 0xff], 4], // an emoji, then a byte UTF-8 never has
      [[0xef, 0xbb, 0xbf, 0x7b, 0x7d], -1], // a UTF-8 byte order mark
    ];
    for (const [bytes, offset] of cases) assert.equal(firstInvalidUtf8(Uint8Array.from(bytes)), offset, String(bytes));
  });

  it('agrees with Node (isUtf8, a fatal TextDecoder) on random bytes', () => {
    const random = seededRandom(8259);
    const decoder = new TextDecoder('utf-8', { fatal: true });
    for (let round = 0; round < 20_000; round++) {
      // Mostly valid text with a few random bytes, so that both outcomes come up often.
      const text = Buffer.from('{"a":"é€😀"}'.repeat(1 + Math.floor(random() * 3)));
      const bytes = Buffer.from(text);
      for (let k = Math.floor(random() * 3); k > 0; k--)
        bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
      const offset = firstInvalidUtf8(bytes);
      assert.equal(offset === -1, isUtf8(bytes), bytes.toString('hex'));
      if (offset === -1) continue;
      // Everything before the offset is UTF-8; the sequence beginning there is not, whatever follows it.
      assert.doesNotThrow(() => decoder.decode(bytes.subarray(0, offset)));
      assert.throws(() => decoder.decode(bytes.subarray(0, offset + 4)), bytes.toString('hex'));
    }
  });

  it('refuses a body that is not UTF-8 naming the field and the byte offset', () => {
    assert.equal(notUtf8Error(Buffer.from('{"a":"café"}')), undefined);
    const error = notUtf8Error(Buffer.from('{"a":"café"}', 'latin1'));
    assert.equal(error?.code, 'VALIDATION_FAILED');
    assert.deepEqual(error?.fields, [
      {
        field: '(body)',
        reason: 'is not valid UTF-8: the byte sequence at byte 9 is not UTF-8 (JSON is accepted only as UTF-8)',
      },
    ]);
    assert.equal(notUtf8Error(Buffer.from([0xff]), '(inference header)')?.fields?.[0].field, '(inference header)');
  });
});
