import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jsonShape, MAX_JSON_DEPTH, nestsDeeperThan } from '../../src/common/http/json-depth';
import { duplicateMemberError } from '../../src/common/http/json-duplicate-keys';

/** An object nesting `levels` levels of objects (level 1: the top one). */
const nested = (levels: number): unknown => {
  let value: unknown = 1;
  for (let i = 0; i < levels; i++) value = { a: value };
  return value;
};

describe('nestsDeeperThan', () => {
  it('counts levels of objects and arrays, scalars at none', () => {
    assert.equal(nestsDeeperThan(7, 0), false);
    assert.equal(nestsDeeperThan('x', 0), false);
    assert.equal(nestsDeeperThan(null, 0), false);
    assert.equal(nestsDeeperThan({}, 1), false);
    assert.equal(nestsDeeperThan({}, 0), true);
    assert.equal(nestsDeeperThan([[1, 2], { a: [3] }], 3), false);
    assert.equal(nestsDeeperThan([[1, 2], { a: [3] }], 2), true);
  });

  it(`allows exactly ${MAX_JSON_DEPTH} levels and refuses one more, on any branch`, () => {
    assert.equal(nestsDeeperThan(nested(MAX_JSON_DEPTH), MAX_JSON_DEPTH), false);
    assert.equal(nestsDeeperThan(nested(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH), true);
    const wide = { items: Array.from({ length: 1000 }, () => ({ features: { v1: 1 } })) };
    assert.equal(nestsDeeperThan({ ...wide, last: [nested(MAX_JSON_DEPTH)] }, MAX_JSON_DEPTH), true);
    assert.equal(nestsDeeperThan(wide, MAX_JSON_DEPTH), false);
  });

  it('walks a body nested far deeper than the call stack could recurse', () => {
    const deep = JSON.parse('['.repeat(200_000) + ']'.repeat(200_000)) as unknown;
    assert.equal(nestsDeeperThan(deep, MAX_JSON_DEPTH), true);
  });
});

describe('jsonShape', () => {
  it("tells the depth and counts the objects' keys in one walk, as nestsDeeperThan and keysIn each did", () => {
    assert.deepEqual(jsonShape(7, 0), { tooDeep: false, keys: 0, unsafeNumbers: false });
    assert.deepEqual(jsonShape({}, 0), { tooDeep: true, keys: 0, unsafeNumbers: false });
    assert.deepEqual(jsonShape([[1, 2], { a: [3], b: { c: null } }], 3), {
      tooDeep: false,
      keys: 3,
      unsafeNumbers: false,
    });
    assert.equal(jsonShape([[1, 2], { a: [3] }], 2).tooDeep, true);
    const batch = {
      transactions: Array.from({ length: 1000 }, (_, i) => ({ transactionId: `tx-${i}`, features: { v1: 1, v2: 2 } })),
    };
    // 1 + 1,000 items of 2 keys + their features' 2.
    assert.deepEqual(jsonShape(batch, MAX_JSON_DEPTH), { tooDeep: false, keys: 1 + 1000 * 4, unsafeNumbers: false });
    assert.equal(jsonShape(nested(MAX_JSON_DEPTH), MAX_JSON_DEPTH).keys, MAX_JSON_DEPTH);
    assert.equal(jsonShape(nested(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH).tooDeep, true);
    const deep = JSON.parse('['.repeat(200_000) + ']'.repeat(200_000)) as unknown;
    assert.equal(jsonShape(deep, MAX_JSON_DEPTH).tooDeep, true);
    assert.deepEqual(jsonShape(deep, Infinity), { tooDeep: false, keys: 0, unsafeNumbers: false });
  });

  it('tells whether a number past 2^53 either way is held, whose digits as sent a double may not keep', () => {
    assert.equal(jsonShape(2 ** 53, 0).unsafeNumbers, true);
    assert.equal(jsonShape({ a: [1, { b: -(2 ** 53) }] }, MAX_JSON_DEPTH).unsafeNumbers, true);
    assert.equal(jsonShape([1e300], MAX_JSON_DEPTH).unsafeNumbers, true);
    assert.equal(jsonShape({ a: [2 ** 53 - 1, -(2 ** 53 - 1), 0.5, '9007199254740993'] }, 3).unsafeNumbers, false);
  });

  it('hands its count to the duplicate member check, which then finds a repeated name without a walk of its own', () => {
    const text = '{"a":1,"b":{"c":2,"c":3}}';
    const parsed = JSON.parse(text) as unknown;
    const { keys } = jsonShape(parsed, MAX_JSON_DEPTH);
    assert.equal(keys, 3);
    assert.equal(duplicateMemberError(Buffer.from(text), parsed, () => text, keys)?.fields[0].field, 'b.c');
    const fine = '{"a":1,"b":{"c":2}}';
    assert.equal(
      duplicateMemberError(Buffer.from(fine), JSON.parse(fine), () => fine, 3),
      undefined,
    );
  });
});
