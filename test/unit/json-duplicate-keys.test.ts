import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DUPLICATE_MEMBER_REASON,
  duplicateMemberError,
  firstDuplicateMember,
  keysIn,
  memberNamesIn,
} from '../../src/common/http/json-duplicate-keys';
import { seededRandom } from '../fixtures/random';

const bytes = (text: string): Buffer => Buffer.from(text, 'utf8');

/** A random JSON value of objects, arrays and scalars, with names that need escapes and strings holding `":`. */
function randomValue(rnd: () => number, depth: number): unknown {
  const pick = rnd();
  if (depth === 0 || pick < 0.3) {
    const scalars = [1.5, -0, 1e21, 'a', 'say "hi":', '\\', '\\"', 'x\u2028y', '\u00e9\u{1f600}', true, null, ''];
    return scalars[Math.floor(rnd() * scalars.length)];
  }
  if (pick < 0.6) return Array.from({ length: Math.floor(rnd() * 4) }, () => randomValue(rnd, depth - 1));
  const names = [
    'a',
    'b',
    'q"uote',
    'back\\slash',
    'colon:',
    'sp ace',
    '7',
    '10',
    '\u00e9',
    'line\nbreak',
    'constructor',
  ];
  const out: Record<string, unknown> = {};
  for (let i = Math.floor(rnd() * 5); i > 0; i--)
    out[names[Math.floor(rnd() * names.length)]] = randomValue(rnd, depth - 1);
  return out;
}

describe('duplicate JSON member names', () => {
  it('counts the member names of a text, whatever its strings hold and its whitespace', () => {
    assert.equal(memberNamesIn(bytes('{}')), 0);
    assert.equal(memberNamesIn(bytes('["a", "b:", {"c" :1}]')), 1);
    assert.equal(memberNamesIn(bytes('{"a\\"":"x\\\\", "b" \n\t: ":", "c":{"d":["e"]}}')), 4);
    assert.equal(memberNamesIn(bytes('"just a string: with a colon"')), 0);
    assert.equal(keysIn(JSON.parse('{"a\\"":"x\\\\", "b" \n\t: ":", "c":{"d":["e"]}}')), 4);
  });

  it('finds no duplicate in thousands of random documents, written compact and spaced', () => {
    const rnd = seededRandom(7);
    for (let n = 0; n < 3000; n++) {
      const value = randomValue(rnd, 5);
      for (const text of [JSON.stringify(value), JSON.stringify(value, null, 2)]) {
        assert.equal(memberNamesIn(bytes(text)), keysIn(JSON.parse(text)), text);
        assert.equal(
          duplicateMemberError(bytes(text), JSON.parse(text), () => text),
          undefined,
          text,
        );
        assert.equal(firstDuplicateMember(text), undefined, text);
      }
    }
  });

  it('names the first repeated member by its path, a name written with escapes included', () => {
    const cases: Array<[string, string]> = [
      ['{"cardToken":"4111 1111 1111 1111","cardToken":"tok_a"}', 'cardToken'],
      ['{"transactions":[{"a":1},{"features":{"v1":1,"v2":2,"v1":3}}]}', 'transactions[1].features.v1'],
      ['{"a":1, "\\u0061" : 2}', 'a'],
      ['[[], {"x": {"y": 1}, "x": 2}]', '[1].x'],
      ['{"a":{"b":1},"c":{"b":1,"d":[{"e":1,"e":1}]}}', 'c.d[0].e'],
    ];
    for (const [text, path] of cases) {
      const parsed: unknown = JSON.parse(text);
      assert.notEqual(memberNamesIn(bytes(text)), keysIn(parsed), text);
      assert.equal(firstDuplicateMember(text), path, text);
      const error = duplicateMemberError(bytes(text), parsed, () => text);
      assert.ok(error, text);
      assert.equal(error.code, 'VALIDATION_FAILED');
      assert.deepEqual(error.fields, [{ field: path, reason: DUPLICATE_MEMBER_REASON }]);
    }
  });

  it('does not repeat a member name that looks like a card number', () => {
    const text = '{"4111 1111 1111 1111":1,"4111 1111 1111 1111":2}';
    const error = duplicateMemberError(bytes(text), JSON.parse(text), () => text);
    assert.ok(error);
    assert.equal(error.fields?.[0].field, '(body)');
    assert.ok(!JSON.stringify(error.fields).includes('4111'));
    assert.ok(!error.message.includes('4111'));
  });
});
