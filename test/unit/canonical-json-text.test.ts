import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalJsonBytes } from '../../src/audit/audit-chain';
import { canonicalJsonOfText } from '../../src/audit/canonical-json-text';
import { MAX_JSON_DEPTH } from '../../src/common/http/json-depth';
import { seededRandom } from '../fixtures/random';

/** Number spellings: canonical ones, and every way JSON has to write a number otherwise. */
const NUMBER_TOKENS = [
  '0',
  '-0',
  '0.0',
  '-0.0',
  '7',
  '-7',
  '10',
  '100',
  '1.5',
  '1.50',
  '-2.25',
  '0.1',
  '0.000001',
  '0.0000001',
  '0.00000123',
  '123456789012345',
  '1234567890123456',
  '12345678901234567',
  '123456789012345678901',
  '1234567890123456789012',
  '0.1234567890123456',
  '0.12345678901234567',
  '1.0000000000000002',
  '9007199254740993',
  '1e5',
  '1E5',
  '1e+5',
  '1e-5',
  '-1.5e-7',
  '2.5E300',
  '1e400',
  '-1e400',
  '1e-400',
  '4.9e-324',
  '0.30000000000000004',
  '12.3456',
  '-1.2345',
  '999999999999999',
  '100000000000000000000',
  '1000000000000000000000',
];

/** Strings: plain ASCII, escapes of every kind, non-ASCII as UTF-8, a lone surrogate, DEL, a quote. */
const STRING_TOKENS = [
  '""',
  '"tx-1"',
  '"EUR"',
  '"a b"',
  '"\\n"',
  '"\\"quoted\\""',
  '"back\\\\slash"',
  '"\\u0041"',
  '"\\u00e9t\\u00e9"',
  '"été"',
  '"日本"',
  '"😀"',
  '"\\ud83d\\ude00"',
  '"\\ud800"',
  '"\\/"',
  '"\\b\\f\\r\\t"',
  '"\u007f"',
  '"\\u2028"',
  '"__proto__"',
  '"constructor"',
];

/** Keys: alike (so that shapes repeat), integer-like ones (objects put those first), escaped and non-ASCII. */
const KEYS = [
  'transactionId',
  'amount',
  'features',
  'v1',
  'v10',
  'v2',
  'v28',
  'a',
  'B',
  '_',
  'Z',
  'é',
  '日',
  '😀',
  '',
  '0',
  '7',
  '10',
  '01',
  'a\\u0062',
  '\\u0061',
  'x y',
  'constructor',
];

function whitespace(rnd: () => number): string {
  const r = rnd();
  return r < 0.7 ? '' : r < 0.8 ? ' ' : r < 0.9 ? '\n  ' : '\t\r\n ';
}

/** A random JSON text, with random whitespace between its tokens; `depth` bounds its nesting. */
function text(rnd: () => number, depth: number): string {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rnd() * list.length)];
  const w = () => whitespace(rnd);
  const r = rnd();
  if (depth <= 0 || r < 0.45) {
    const p = rnd();
    if (p < 0.45) return pick(NUMBER_TOKENS);
    if (p < 0.55) return String(Math.round((rnd() * 4 - 2) * 1e4) / 1e4);
    if (p < 0.9) return pick(STRING_TOKENS);
    return pick(['true', 'false', 'null']);
  }
  if (r < 0.65) {
    const n = Math.floor(rnd() * 5);
    return `[${w()}${Array.from({ length: n }, () => text(rnd, depth - 1)).join(`${w()},${w()}`)}${w()}]`;
  }
  // An object with distinct keys (the event loop refuses a repeated one before any digest is used).
  const keys = [...new Set(Array.from({ length: Math.floor(rnd() * 6) }, () => pick(KEYS)))].filter(
    (key, i, all) => all.findIndex((k) => JSON.parse(`"${k}"`) === JSON.parse(`"${key}"`)) === i,
  );
  const members = keys.map((key) => `"${key}"${w()}:${w()}${text(rnd, depth - 1)}`);
  return `{${w()}${members.join(`${w()},${w()}`)}${w()}}`;
}

/** The definition: the parsed text's canonicalJsonBytes. */
function expected(json: string): string {
  return canonicalJsonBytes(JSON.parse(json)).toString('utf8');
}

/** A fraud batch as a bank sends it: feature values with a few decimals, keys in the bank's order. */
function batch(rnd: () => number, n: number): string {
  const transactions = Array.from({ length: n }, (_, i) => {
    const features: Record<string, number> = {};
    for (let k = 1; k <= 28; k++) features[`v${k}`] = Math.round((rnd() * 4 - 2) * 1e6) / 1e6;
    return {
      transactionId: `tx-${i}`,
      occurredAt: '2026-11-05T10:00:00+01:00',
      amount: Math.round(rnd() * 50000) / 100,
      currency: 'EUR',
      cardToken: `tok_${i}`,
      features,
    };
  });
  return JSON.stringify({ transactions });
}

describe('canonicalJsonOfText', () => {
  it('writes every number as JavaScript prints its value, whatever its spelling', () => {
    for (const token of NUMBER_TOKENS) {
      for (const json of [token, `[${token}]`, `{"n":${token}}`, ` ${token} `]) {
        assert.equal(canonicalJsonOfText(Buffer.from(json))?.toString('utf8'), expected(json), json);
      }
    }
  });

  it('writes every string and key as canonicalJson does: escapes undone or redone, UTF-8 as it decodes', () => {
    for (const token of STRING_TOKENS) {
      for (const json of [token, `{${token}:${token},"a":1}`]) {
        assert.equal(canonicalJsonOfText(Buffer.from(json))?.toString('utf8'), expected(json), json);
      }
    }
    // Bytes that are not UTF-8, inside a string: U+FFFD, as the whole text's decoding gives.
    const bytes = Buffer.concat([Buffer.from('{"b":"x'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('y","a":1}')]);
    assert.equal(
      canonicalJsonOfText(bytes)?.toString('utf8'),
      canonicalJsonBytes(JSON.parse(bytes.toString())).toString(),
    );
  });

  it('gives the bytes of canonicalJsonBytes(JSON.parse(text)) for 5,000 random texts', () => {
    const rnd = seededRandom(20261207);
    let written = 0;
    for (let i = 0; i < 5000; i++) {
      const json = text(rnd, 4);
      const got = canonicalJsonOfText(Buffer.from(json));
      if (got === undefined) continue;
      written++;
      assert.equal(got.toString('utf8'), expected(json), json);
    }
    // It gives up only where most numbers must be written again; these texts have few numbers.
    assert.ok(written > 4900, `written from the text: ${written} of 5000`);
  });

  it("writes a bank's batch from its text, as the parse would, and so for any member order", () => {
    const json = batch(seededRandom(7), 1000);
    const got = canonicalJsonOfText(Buffer.from(json));
    assert.ok(got, 'a batch with six-decimal features is written from its text');
    assert.equal(got.toString('utf8'), expected(json));
    // The same batch with every object's members in another order, pretty-printed: the same canonical bytes.
    const reordered = JSON.stringify(
      (JSON.parse(json) as { transactions: Record<string, unknown>[] }).transactions.map((t) =>
        Object.fromEntries(Object.entries(t).reverse()),
      ),
      null,
      2,
    );
    assert.equal(
      canonicalJsonOfText(Buffer.from(`{"transactions": ${reordered}}`))?.toString('utf8'),
      got.toString('utf8'),
    );
  });

  it('leaves to the parse a text with a repeated key, a BOM, or that is not JSON', () => {
    for (const json of ['{"a":1,"a":2}', '{"a":{"b":1,"c":2,"b":3}}', '{"\\u0061":1,"a":2}', '\ufeff{"a":1}']) {
      assert.equal(canonicalJsonOfText(Buffer.from(json)), undefined, json);
    }
    for (const json of [
      '',
      '{',
      '{"a":1,}',
      '[1,]',
      '{"a" 1}',
      '01',
      '1.',
      '-',
      '.5',
      '"abc',
      'tru',
      '[1] 2',
      '{a:1}',
      '"\u0001"',
    ]) {
      assert.equal(canonicalJsonOfText(Buffer.from(json)), undefined, json);
    }
  });

  it('leaves to the parse a text nested past the limit, or nested to make putting members in order cost more', () => {
    const nested = (levels: number) => '{"a":'.repeat(levels) + '1' + '}'.repeat(levels);
    const deepest = nested(MAX_JSON_DEPTH);
    assert.equal(canonicalJsonOfText(Buffer.from(deepest))?.toString('utf8'), expected(deepest));
    assert.equal(canonicalJsonOfText(Buffer.from(nested(MAX_JSON_DEPTH + 1))), undefined);
    assert.equal(canonicalJsonOfText(Buffer.from('['.repeat(100_000) + ']'.repeat(100_000))), undefined);
    // 60 objects deep around 200 KB of members: each level would move them all again.
    const heavy = '{"b":'.repeat(60) + JSON.stringify({ a: 'x'.repeat(200_000) }) + '}'.repeat(60);
    assert.equal(canonicalJsonOfText(Buffer.from(heavy)), undefined);
    // A batch moves each member about twice, well inside the allowance.
    assert.ok(canonicalJsonOfText(Buffer.from(batch(seededRandom(5), 100))));
  });

  it('leaves to the parse a text whose numbers mostly must be written again (17 digits, as float64s print)', () => {
    const rnd = seededRandom(3);
    const json = JSON.stringify({ values: Array.from({ length: 500 }, () => rnd() * 4 - 2) });
    assert.equal(canonicalJsonOfText(Buffer.from(json)), undefined);
    // A few such numbers among many that print as sent are written here.
    const mixed = JSON.stringify({ values: Array.from({ length: 500 }, (_, i) => (i % 10 === 0 ? rnd() : i / 4)) });
    assert.equal(canonicalJsonOfText(Buffer.from(mixed))?.toString('utf8'), expected(mixed));
  });
});
