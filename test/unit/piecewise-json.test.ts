import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PIECEWISE_FROM_ITEMS, piecewiseJson } from '../../src/common/http/piecewise-json';

const many = <T>(make: (i: number) => T, n = PIECEWISE_FROM_ITEMS * 3 + 7): T[] =>
  Array.from({ length: n }, (_, i) => make(i));

describe('answers with a long array, written in pieces (piecewiseJson)', () => {
  it('writes the bytes JSON.stringify writes', () => {
    const when = new Date('2026-12-06T01:02:03.004Z');
    const cases: Array<Record<string, unknown>> = [
      // A fraud batch's shape: results, counts, the model, the request id.
      {
        items: many((index) => ({
          index,
          result: { transactionId: `tx-${index}`, fraudProbability: index / 1e3, topFeatures: [{ feature: 'amount' }] },
        })),
        scored: 3,
        model: { name: 'card-fraud', version: '1.0.0' },
        requestId: 'r-1',
      },
      // Items with no JSON form are null, members with none are left out, whatever their place.
      {
        skipped: undefined,
        list: many((i) => [undefined, () => i, Symbol('s'), null, i, `s${i}`][i % 6]),
        fn: () => 1,
        last: 'x',
      },
      // toJSON of items (dates), non-ASCII and escaped text, escaped keys, nested long arrays left whole.
      {
        'quote"key\u2028': many((i) => ({ at: when, text: `é ☃ \ud83d\ude00 "${i}"\n\u0000` })),
        nested: { long: many((i) => i) },
        [Symbol('hidden')]: 1,
      },
      // Two long arrays, holes and a NaN among the items, an array exactly at the threshold.
      { a: many((i) => i), b: many((i) => (i === 3 ? NaN : i === 5 ? Infinity : -i), PIECEWISE_FROM_ITEMS) },
      { holes: new Array(PIECEWISE_FROM_ITEMS + 1) },
    ];
    for (const value of cases) {
      const bytes = piecewiseJson(value);
      assert.ok(bytes, 'written in pieces');
      assert.equal(bytes.toString('utf8'), JSON.stringify(value));
    }
  });

  it('leaves anything else to JSON.stringify', () => {
    const withToJson = { items: many((i) => i), toJSON: () => 'mine' };
    const arrayWithToJson = Object.assign(
      many((i) => i),
      { toJSON: () => [] },
    );
    for (const value of [
      { items: many((i) => i, PIECEWISE_FROM_ITEMS - 1) },
      many((i) => i),
      withToJson,
      { items: arrayWithToJson },
      'text',
      null,
      undefined,
      7,
    ]) {
      assert.equal(piecewiseJson(value), undefined);
    }
  });
});
