import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AppError, MAX_FIELD_ERRORS, MORE_FIELDS } from '../../src/common/errors/app-error';
import { batchItemErrors } from '../../src/domains/finance/fraud-batch.util';
import { parseFraudScoreRequest } from '../../src/domains/finance/fraud-item.schema';
import { panRefusal } from '../../src/domains/finance/pan-guard.util';
import { tx } from '../fixtures/finance-data';

const RANGE = { floor: { ms: Date.parse('2000-01-01T00:00:00Z'), text: '2000-01-01T00:00:00Z' }, aheadMs: 300_000 };

/** An object of `n` members `<prefix><i>`, each holding `value`. */
const members = (n: number, prefix: string, value: unknown): Record<string, unknown> =>
  Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}${i}`, value]));

/** The list ends with the one MORE_FIELDS entry counting `more`, after the first MAX_FIELD_ERRORS. */
function assertCapped(fields: Array<{ field: string; reason: string }>, more: number): void {
  assert.equal(fields.length, MAX_FIELD_ERRORS + 1);
  assert.deepEqual(fields[MAX_FIELD_ERRORS], {
    field: MORE_FIELDS,
    reason: `${more} more not listed (at most ${MAX_FIELD_ERRORS} are)`,
  });
}

describe('field errors: an answer lists at most MAX_FIELD_ERRORS, then how many more', () => {
  it('any refusal: the list and its detail stop after the first hundred', () => {
    const fields = Array.from({ length: 1000 }, (_, i) => ({ field: `f${i}`, reason: 'is not an accepted field' }));
    const error = new AppError('VALIDATION_FAILED', 'x', { fields });
    assertCapped(error.fields, 900);
    assert.equal(error.fields[99].field, 'f99');
    // A list already cut is kept as it is.
    assert.deepEqual(new AppError('VALIDATION_FAILED', 'x', { fields: error.fields }).fields, error.fields);
    assert.deepEqual(new AppError('VALIDATION_FAILED', 'x', { fields: fields.slice(0, 100) }).fields.length, 100);
  });

  it('a body of many card numbers: the first hundred named, the rest counted', () => {
    const refusal = panRefusal(members(250, 'pan', '4111111111111111'));
    assert.ok(refusal);
    assertCapped(refusal.fields, 150);
    assert.equal(refusal.fields[0].field, 'pan0');
    // A card number as key and value is one field, counted once.
    const both = panRefusal({ '4111111111111111': '4111111111111111', ...members(150, 'p', '4111111111111111') });
    assert.ok(both);
    assertCapped(both.fields, 51);
    assert.deepEqual(
      both.fields.slice(0, 2).map((f) => f.field),
      ['(card number)', 'p0'],
    );
  });

  it('the fraud route and a fraud batch item: unknown keys are not each listed', () => {
    // Up to MAX_OBJECT_MEMBERS (a wider object is refused as one field before ajv names any key).
    const body = { ...tx(), ...members(4000, 'extra', 1) };
    assert.throws(
      () => parseFraudScoreRequest(body),
      (error: AppError) => {
        assertCapped(error.fields, 3900);
        assert.ok(error.detail.length < 10_000, `${error.detail.length} characters`);
        assert.ok(error.detail.endsWith(`${MORE_FIELDS}: 3900 more not listed (at most 100 are)`));
        return true;
      },
    );
    const [item] = batchItemErrors([body], RANGE);
    assert.ok(item);
    assertCapped(item.errors, 3900);
    assert.ok(item.detail.length < 10_000);
  });
});
