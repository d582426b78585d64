import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { storableJson, storableText } from '../../src/common/storable-text';

describe('storable audit text', () => {
  it('writes NUL and lone surrogates as U+FFFD, and leaves well-formed text alone', () => {
    assert.equal(storableText('a\u0000b\u0000'), 'a\uFFFDb\uFFFD');
    assert.equal(storableText('x\ud800y\udc00'), 'x\uFFFDy\uFFFD');
    assert.equal(storableText('😀 Müller'), '😀 Müller');
  });

  it('cleans keys and strings at every level of a summary, keeping numbers, booleans, null and dates', () => {
    const at = new Date('2026-12-04T00:00:00Z');
    assert.deepEqual(storableJson({ 'k\u0000': ['\ud800', 1, true, null], at, inner: { v: 'ok' } }), {
      'k\uFFFD': ['\uFFFD', 1, true, null],
      at,
      inner: { v: 'ok' },
    });
    assert.equal(storableJson(null), null);
  });
});
