import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PIECEWISE_PARSE_FROM_BYTES, parseJsonInPieces } from '../../src/common/http/json-in-pieces';

/** A small deterministic generator, so that a failure can be replayed. */
function random(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1664525 + 1013904223) % 4294967296;
    return s / 4294967296;
  };
}

const TRICKY = ['},{', '"', '\\', '[', ']', '{', '}', ',', ':', 'é', '😀', '\u0000', '\u2028', '\\u0022', '},{"a":'];

function value(rnd: () => number, depth: number): unknown {
  const pick = rnd();
  if (depth > 3 || pick < 0.35) {
    const kind = Math.floor(rnd() * 5);
    if (kind === 0) return Math.round((rnd() - 0.5) * 1e6) / 1e3;
    if (kind === 1) return rnd() < 0.5;
    if (kind === 2) return null;
    return Array.from({ length: Math.floor(rnd() * 4) }, () => TRICKY[Math.floor(rnd() * TRICKY.length)]).join('x');
  }
  if (pick < 0.6) return Array.from({ length: Math.floor(rnd() * 4) }, () => value(rnd, depth + 1));
  return Object.fromEntries(
    Array.from({ length: Math.floor(rnd() * 5) }, (_, i) => [
      `k${i}${TRICKY[Math.floor(rnd() * TRICKY.length)]}`,
      value(rnd, depth + 1),
    ]),
  );
}

/** A body of `count` items (objects, as a batch's are) under `key`, or a top-level array. */
function body(seed: number, count: number, key: string | undefined = 'transactions'): Buffer {
  const rnd = random(seed);
  const items = Array.from({ length: count }, (_, i) => ({ id: `tx-${i}`, amount: i / 7, extra: value(rnd, 1) }));
  return Buffer.from(JSON.stringify(key === undefined ? items : { before: value(rnd, 1), [key]: items, after: 1 }));
}

/** What the whole body parses to, or undefined when it is not JSON. */
function whole(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

describe('large JSON bodies parsed in pieces (parseJsonInPieces)', () => {
  it('gives what JSON.parse gives for batches of many shapes, under a key or as the top-level array', () => {
    let split = 0;
    for (let seed = 1; seed <= 12; seed++) {
      const bytes = body(seed, 5000 + seed * 100, seed % 3 === 0 ? undefined : 'transactions');
      assert.ok(bytes.length >= PIECEWISE_PARSE_FROM_BYTES);
      const parsed = parseJsonInPieces(bytes);
      if (parsed !== undefined) split++;
      assert.deepStrictEqual(parsed ?? whole(bytes), whole(bytes), `seed ${seed}`);
    }
    assert.ok(split >= 10, `split ${split} of 12`);
  });

  it('never gives another value, nor one for a body that is not JSON, whatever byte is changed', () => {
    const base = body(99, 5000);
    const rnd = random(7);
    for (let round = 0; round < 300; round++) {
      const bytes = Buffer.from(base);
      for (let k = 0; k < 1 + Math.floor(rnd() * 3); k++) {
        bytes[Math.floor(rnd() * bytes.length)] = '{}[],":\\ a0\x00'.charCodeAt(Math.floor(rnd() * 13));
      }
      // Never throws: a body it does not split is left to the whole parse, which reports its error.
      const parsed = parseJsonInPieces(bytes);
      if (parsed !== undefined) assert.deepStrictEqual(parsed, whole(bytes), `round ${round}`);
    }
  });

  it('leaves to the whole parse what it must not split: a repeated key, a prototype key, a BOM, other shapes', () => {
    const items = JSON.stringify(Array.from({ length: 4000 }, (_, i) => ({ id: i, text: 'x'.repeat(60) })));
    const cases = [
      // The last of a repeated key wins: the whole parse says which.
      `{"transactions":${items},"transactions":[1]}`,
      `{"transactions":${items},"\\u0074ransactions":[1]}`,
      // A prototype key in an item in the middle: refused by the whole parse, as Fastify's parser refuses it.
      `{"transactions":${items.replace('{"id":2000,', '{"id":2000,"__proto__":{"x":1},')}}`,
      `\ufeff{"transactions":${items}}`,
      JSON.stringify({ transactions: JSON.parse(items) as unknown }, null, 1),
      `{"one":"${'x'.repeat(400_000)}"}`,
      `[${'1,'.repeat(200_000)}1]`,
    ];
    for (const text of cases) assert.equal(parseJsonInPieces(Buffer.from(text)), undefined, text.slice(0, 60));
    // A repeated key before the array: the array is the last, and wins either way.
    const first = `{"transactions":[1],"transactions":${items}}`;
    assert.deepStrictEqual(parseJsonInPieces(Buffer.from(first)), JSON.parse(first));
  });

  it('leaves small bodies alone', () => {
    assert.equal(parseJsonInPieces(body(1, 100)), undefined);
  });
});
