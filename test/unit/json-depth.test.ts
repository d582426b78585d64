import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_JSON_DEPTH, nestsDeeperThan } from '../../src/common/http/json-depth';

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
