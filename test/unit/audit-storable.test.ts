import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { storableJson, storableJsonText, storableText } from '../../src/common/storable-text';

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

  it('writes the stored JSON text: JSON.stringify where nothing needs mending, else the text of storableJson', () => {
    const at = new Date('2026-12-04T00:00:00Z');
    const values: unknown[] = [
      { items: [{ id: 'a', p: 0.5, at, none: undefined }], note: 'caf\u00e9 😀 \\ "q" \u0001' },
      { 'k\u0000': 1 },
      { v: ['x\ud800', '\udfff'] },
      { v: 'x\u0000' },
      // Spells out an escape (a backslash, then u0000): no NUL, but taken the slower way; the same text.
      { v: '\\u0000 and \\uD800' },
    ];
    for (const value of values) {
      const text = storableJsonText(value);
      assert.equal(text, JSON.stringify(storableJson(value)));
      assert.doesNotMatch(text, /(?<!\\)\\u(0000|d[89a-f])/i);
    }
    assert.equal(storableJsonText(values[0]), JSON.stringify(values[0]));
  });
});
