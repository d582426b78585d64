import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { batchItemErrors } from '../../src/domains/finance/fraud-batch.util';
import { tx } from '../fixtures/finance-data';

const RANGE = { floor: { ms: Date.parse('2000-01-01T00:00:00Z'), text: '2000-01-01T00:00:00Z' }, aheadMs: 300_000 };

/** Each item as `scored` or `<code> <field>: <reason>` (its first error). */
const outcomes = (items: unknown[]): string[] =>
  batchItemErrors(items, RANGE).map((e) => (e ? `${e.code} ${e.errors[0].field}: ${e.errors[0].reason}` : 'scored'));

const repeat = (first: number) => `DUPLICATE_TRANSACTION_ID transactionId: already sent as item ${first} of this batch`;

describe('fraud batch items: a transactionId is scored once per batch', () => {
  it('the first item with an id is scored; each later one, identical or not, names it', () => {
    assert.deepEqual(
      outcomes([
        tx({ transactionId: 'a' }),
        tx({ transactionId: 'b' }),
        tx({ transactionId: 'a' }),
        tx({ transactionId: 'b', amount: 7 }),
        tx({ transactionId: 'a', currency: 'USD' }),
      ]),
      ['scored', 'scored', repeat(0), repeat(1), repeat(0)],
    );
  });

  it('an invalid item holds no id: the first valid one with it is scored, and an invalid repeat keeps its own error', () => {
    assert.deepEqual(
      outcomes([
        tx({ transactionId: 'a', amount: -1 }),
        tx({ transactionId: 'a', cardToken: '4111111111111111' }),
        tx({ transactionId: 'a' }),
        tx({ transactionId: 'a', currency: 'ZZZ' }),
        tx({ transactionId: 'a' }),
      ]),
      [
        'VALIDATION_FAILED amount: must not be less than 0',
        'PAN_DETECTED cardToken: looks like a card number (PAN); never send one',
        'scored',
        'VALIDATION_FAILED currency: must be an ISO 4217 code',
        repeat(2),
      ],
    );
  });

  it('ids are compared exactly, and names of Object.prototype members are ids like any other', () => {
    assert.deepEqual(
      outcomes([
        tx({ transactionId: 'TX-1' }),
        tx({ transactionId: 'tx-1' }),
        tx({ transactionId: '__proto__' }),
        tx({ transactionId: 'constructor' }),
        tx({ transactionId: '__proto__' }),
        tx({ transactionId: 'toString' }),
      ]),
      ['scored', 'scored', 'scored', 'scored', repeat(2), 'scored'],
    );
  });

  it('items that are not objects are their own errors and hold no id', () => {
    assert.deepEqual(outcomes([null, 'a', tx({ transactionId: 'a' }), '4111111111111111']), [
      'VALIDATION_FAILED (item): each transaction must be an object',
      'VALIDATION_FAILED (item): each transaction must be an object',
      'scored',
      'PAN_DETECTED (item): looks like a card number (PAN); never send one',
    ]);
  });

  // A placeholder date (0001-01-01, 1900-01-01, 1970-01-01) was scored: the model reads only its hour of day.
  it('an item dated before the earliest time is refused naming occurredAt, and holds no id', () => {
    const early =
      'TIME_OUT_OF_RANGE occurredAt: must not be before 2000-01-01T00:00:00Z (FINANCE_EARLIEST_TIME): a placeholder date such as 0001-01-01 or 1970-01-01 is not a real time';
    assert.deepEqual(
      outcomes([
        tx({ transactionId: 'a', occurredAt: '0001-01-01T00:00:00Z' }),
        tx({ transactionId: 'a', occurredAt: '1900-01-01T00:00:00Z' }),
        tx({ transactionId: 'a', occurredAt: '1970-01-01T00:00:00Z' }),
        tx({ transactionId: 'a', occurredAt: '2000-01-01T00:30:00+01:00' }),
        tx({ transactionId: 'a', occurredAt: '2000-01-01T00:00:00Z' }),
        tx({ transactionId: 'b', occurredAt: '0001-01-01T00:00:00Z', amount: -1 }),
      ]),
      [early, early, early, early, 'scored', 'VALIDATION_FAILED amount: must not be less than 0'],
    );
  });

  // A time that has not come yet was scored by its hour of day.
  it('an item dated further ahead of the clock than the allowance is refused naming occurredAt, and holds no id', () => {
    const late =
      "TIME_OUT_OF_RANGE occurredAt: must not be more than 300000 ms ahead of the gateway's clock (FINANCE_FUTURE_TOLERANCE_MS): a time that has not come yet";
    const ahead = (ms: number): string => new Date(Date.now() + ms).toISOString();
    assert.deepEqual(
      outcomes([
        tx({ transactionId: 'a', occurredAt: ahead(400_000) }),
        tx({ transactionId: 'a', occurredAt: '2099-01-01T00:00:00Z' }),
        tx({ transactionId: 'a', occurredAt: ahead(60_000) }),
      ]),
      [late, late, 'scored'],
    );
  });
});
